"""Run by tests/datagen/test_vllm_engine.py in a fresh process: load the `vllm` engine on a
model and print, as JSON, what the test checks.

A fresh process because vLLM's worker runs in the engine's process on CPU and, as it starts,
scans every loaded module (a werkzeug proxy left by another test makes that raise), replaces
torch.set_num_threads and sets environment variables that later tests would inherit.

    python tests/vllm_processor_check.py MODEL_FOLDER MODEL_STORE
"""

import json
import os
import sys

PROMPTS = [  # also the prompts of the vllm pipeline test
    "Write a short story about a lighthouse keeper.",
    "Écris un poème sur la mer.",
    "Escribe una receta sencilla.",
    "Schreibe eine kurze E-Mail.",
]


def main(model: str, store: str) -> None:
    import torch
    from vllm import SamplingParams

    from datagen.engines.config import SamplingConfig, VLLMEngineConfig
    from datagen.engines.vllm_engine import VLLMEngine
    from model_store import ModelStore

    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # collective_rpc with a function
    config = VLLMEngineConfig(
        backend="vllm", model=model, max_model_len=128, kv_cache_gb=0.25, torch_threads=1
    )
    engine = VLLMEngine(config, ModelStore(store).resolve(model))
    try:
        conversations = [[{"role": "user", "content": prompt}] for prompt in PROMPTS]
        # A greedy sample in the batch: rows without a nucleus beside rows with one.
        sampling = SamplingConfig(n=4, temperature=[0.7, 1.0, 1.3, 0.0], top_p=0.8, max_tokens=16, seed=5)
        ours = [c.text for row in engine.generate(conversations, sampling) for c in row]
        params = [
            SamplingParams(temperature=t, top_p=0.8 if t > 0 else 1.0, max_tokens=16, seed=5 + k)
            for k, t in enumerate(sampling.temperatures())
        ]
        requests = [{"prompt_token_ids": engine.encode(c)} for c in conversations for _ in params]
        outputs = engine.llm.generate(requests, [p for _ in conversations for p in params], use_tqdm=False)
        wide = engine.generate(conversations, sampling.model_copy(update={"top_p": 1.0}))
        result = {
            "worker_threads": engine.llm.collective_rpc(lambda _: torch.get_num_threads()),
            "multiprocessing_env_left": "VLLM_ENABLE_V1_MULTIPROCESSING" in os.environ,
            "ours": ours,
            "vllm_top_p": [output.outputs[0].text.strip() for output in outputs],
            "top_p_1": [c.text for row in wide for c in row],
        }
    finally:
        engine.llm.llm_engine.engine_core.shutdown()
    print("RESULT " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":  # vLLM may start processes that import this module
    main(sys.argv[1], sys.argv[2])
