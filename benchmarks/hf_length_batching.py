"""The `hf` engine's length-aware batching against its former static batching, in one run.

On the demo's own rendered prompts and sampling (examples/best_of_n_ifeval.yaml: n=4 at
temperatures 0.3/0.7/1.0/1.3, top_p 0.95, at most 160 new tokens, seed 0, batch 25), one
`HFEngine` (2 torch threads) generates the same batches twice:

- before: static batching as the engine did until 2026-12-05: one `model.generate` call per
  temperature over the whole batch of conversations (left-padded to the longest prompt; every
  row runs until the longest sample of the call ends), seeded with `torch.manual_seed`;
- after: `HFEngine.generate`, length-sorted groups of at most `batch_size` sequences that
  drop each sequence as soon as it stops.

Reports completion tokens per second of each, the token positions each ran through the model
(`after` only: its `token_slots`), and the ratio after / before. Writes a JSON result.

    .venv/bin/python benchmarks/hf_length_batching.py --limit 16
"""

import argparse
import os
import platform
import time
from typing import Any

from demo_speed import demo_batches, hf_demo_engine
from results_io import add_output_args, write_result

from datagen.engines.config import SamplingConfig
from datagen.engines.hf import HFEngine


def static_generate(engine: HFEngine, conversations: list, sampling: SamplingConfig) -> tuple[int, int]:
    """The former `HFEngine.generate`: (completion tokens, token positions run through the model)."""
    import torch

    prompts = [engine.render(c) for c in conversations]
    batch = engine.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    width = batch["input_ids"].shape[1]
    tokens = slots = 0
    for k, temperature in enumerate(sampling.temperatures()):
        torch.manual_seed(sampling.seed + k)
        args: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": sampling.top_p}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.inference_mode():
            output = engine.model.generate(
                **batch,
                max_new_tokens=sampling.max_tokens,
                pad_token_id=engine.tokenizer.pad_token_id,
                eos_token_id=sorted(engine.stop_ids),
                **args,
            )
        new = output[:, width:]
        slots += batch["input_ids"].numel() + new.numel() - new.shape[0]  # last token never fed back
        for row in new.tolist():
            stop = next((i for i, t in enumerate(row) if t in engine.stop_ids), None)
            tokens += len(row) if stop is None else stop + 1
    return tokens, slots


def timed(label: str, run: Any) -> dict:
    started = time.perf_counter()
    tokens, slots = run()
    seconds = time.perf_counter() - started
    result = {"tokens": tokens, "token_slots": slots, "seconds": round(seconds, 1)}
    result["tokens_per_s"] = round(tokens / seconds, 1)
    print(f"{label}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--limit", type=int, default=16, help="First N demo prompts (the demo has 50).")
    add_output_args(parser, "hf_length_batching")
    args = parser.parse_args()

    batches, sampling, batch_size = demo_batches(args.limit, args.model)
    engine = hf_demo_engine(args.model, batch_size)
    load = os.getloadavg()[0]

    def before() -> tuple[int, int]:
        counts = [static_generate(engine, batch, sampling) for batch in batches]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def after() -> tuple[int, int]:
        engine.token_slots = 0
        tokens = sum(
            c.completion_tokens for batch in batches for row in engine.generate(batch, sampling) for c in row
        )
        return tokens, engine.token_slots

    static = timed("before (static batches)", before)
    aware = timed("after (length-aware, finished rows dropped)", after)
    ratio = aware["tokens_per_s"] / static["tokens_per_s"]
    result = {
        "benchmark": "hf_length_batching",
        "model": args.model,
        "prompts": sum(len(b) for b in batches),
        "sampling": sampling.model_dump(),
        "batch_size": batch_size,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, 2 torch threads",
        "load_average_start": round(load, 1),
        "load_average_end": round(os.getloadavg()[0], 1),
        "before": static,
        "after": aware,
        "ratio": round(ratio, 2),
    }
    write_result(args, result)
    for label, r in (("before", static), ("after", aware)):
        print(f"{label}: {r['tokens_per_s']:.1f} tok/s ({r['tokens']} tokens, {r['token_slots']} slots)")
    print(f"ratio {ratio:.2f}x; load average {result['load_average_start']} -> {result['load_average_end']}")


if __name__ == "__main__":
    main()
