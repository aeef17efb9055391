"""Batched vs one-prompt-at-a-time generation with the `hf` engine, measured side by side.

Same model, prompts and sampling settings; the figure is useful completion tokens per second
(tokens after an end-of-turn are not counted). Prints the ratio and writes a JSON result.

    .venv/bin/python benchmarks/hf_batching.py [--model smollm2-135m-instruct] [--prompts 32]
"""

import argparse
import os
import platform
import time

from results_io import add_output_args, write_result

from assay.settings import model_store_dir
from datagen.engines.config import HFEngineConfig, SamplingConfig
from datagen.engines.hf import HFEngine
from model_store import ModelStore

PROMPTS = [
    "Give three tips for learning a new language.",
    "Explain what a rainbow is to a child.",
    "Write a haiku about autumn.",
    "Describe a good breakfast in two sentences.",
    "What is the capital of France, and why is it famous?",
    "Écris une courte phrase sur la mer.",
    "Escribe un consejo para dormir mejor.",
    "Nenne drei Obstsorten und ihre Farben.",
]


def measure(engine: HFEngine, prompts: list[str], batch_size: int, sampling: SamplingConfig) -> dict:
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    tokens = 0
    started = time.perf_counter()
    for start in range(0, len(conversations), batch_size):
        for completions in engine.generate(conversations[start : start + batch_size], sampling):
            tokens += sum(c.completion_tokens for c in completions)
    seconds = time.perf_counter() - started
    return {"batch_size": batch_size, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="Torch threads.")
    add_output_args(parser, "hf_batching")
    args = parser.parse_args()

    model = ModelStore(model_store_dir()).resolve(args.model)
    engine = HFEngine(
        HFEngineConfig(model=args.model, batch_size=args.batch_size, torch_threads=args.threads), model
    )
    sampling = SamplingConfig(n=1, temperature=0.7, max_tokens=args.max_tokens, seed=0)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    measure(engine, prompts[:2], 2, sampling)  # warm-up: first calls pay one-off costs
    batched = measure(engine, prompts, args.batch_size, sampling)
    single = measure(engine, prompts, 1, sampling)
    ratio = batched["tokens_per_s"] / single["tokens_per_s"]
    result = {
        "benchmark": "hf_batching",
        "model": args.model,
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {args.threads} torch threads",
        "batched": batched,
        "one_at_a_time": single,
        "ratio": ratio,
    }
    write_result(args, result)
    print(
        f"batched (batch {args.batch_size}): {batched['tokens_per_s']:.1f} tok/s "
        f"({batched['tokens']} tokens in {batched['seconds']:.1f} s)"
    )
    print(
        f"one at a time:        {single['tokens_per_s']:.1f} tok/s "
        f"({single['tokens']} tokens in {single['seconds']:.1f} s)"
    )
    print(f"ratio batched / one-at-a-time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
