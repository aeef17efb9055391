"""The `hf` engine's sampler: a full sort of the vocabulary at every step against the nucleus
found among the top tokens (datagen/engines/nucleus.py), in one run.

On the demo's own rendered prompts and sampling (examples/best_of_n_ifeval.yaml: n=4 at
temperatures 0.3/0.7/1.0/1.3, top_p 0.95, at most 160 new tokens, seed 0, batch 25), one
`HFEngine` (2 torch threads) generates the same batches twice:

- before: the sampler the engine used until 2026-12-06, which sorted all 49,152 probabilities
  of every sequence at every step (copied below as the baseline);
- after: `datagen.engines.hf.sample_tokens`, which finds the same nucleus among the top 64 (then
  1,024) tokens and draws the same token from the same uniform number.

Reports completion tokens per second of each, the ratio after / before, and whether both drew
the same completions (they should: same seeds, same nucleus). Writes a JSON result.

    .venv/bin/python benchmarks/hf_nucleus.py --limit 16
"""

import argparse
import os
import platform
import time
from collections.abc import Sequence
from typing import Any

from demo_speed import demo_batches, hf_demo_engine, texts_digest
from results_io import add_output_args, write_result

from datagen.engines import hf


def full_sort_sample(logits: Any, temperatures: Any, generators: Sequence[Any], top_p: float) -> Any:
    """The former `sample_tokens`: sort every row's whole vocabulary, then invert the nucleus."""
    import torch

    greedy = logits.argmax(dim=-1)
    sampled_rows = temperatures > 0
    if not bool(sampled_rows.any()):
        return greedy
    scaled = logits.float() / temperatures.clamp(min=1e-6)[:, None]
    probs = torch.softmax(scaled, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    if top_p < 1.0:
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    cumulative = sorted_probs.cumsum(dim=-1)
    uniform = torch.cat([torch.rand(1, generator=g) for g in generators])
    target = (uniform * cumulative[:, -1])[:, None]
    position = torch.searchsorted(cumulative, target, right=True).clamp(max=logits.shape[-1] - 1)
    sampled = order.gather(-1, position).squeeze(-1)
    return torch.where(sampled_rows, sampled, greedy)


def timed(label: str, engine: hf.HFEngine, batches: list, sampling: Any) -> dict:
    started = time.perf_counter()
    completions = [c for batch in batches for row in engine.generate(batch, sampling) for c in row]
    seconds = time.perf_counter() - started
    tokens = sum(c.completion_tokens for c in completions)
    result = {
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        "texts_sha256": texts_digest(c.text for c in completions),
    }
    print(f"{label}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--limit", type=int, default=16, help="First N demo prompts (the demo has 50).")
    add_output_args(parser, "hf_nucleus")
    args = parser.parse_args()

    batches, sampling, batch_size = demo_batches(args.limit, args.model)
    engine = hf_demo_engine(args.model, batch_size)
    load = os.getloadavg()[0]
    nucleus_sample = hf.sample_tokens
    hf.sample_tokens = full_sort_sample  # decode() looks the sampler up in its module
    before = timed("before (full sort)", engine, batches, sampling)
    hf.sample_tokens = nucleus_sample
    after = timed("after (nucleus among the top tokens)", engine, batches, sampling)
    ratio = after["tokens_per_s"] / before["tokens_per_s"]
    result = {
        "benchmark": "hf_nucleus",
        "model": args.model,
        "prompts": sum(len(b) for b in batches),
        "sampling": sampling.model_dump(),
        "batch_size": batch_size,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, 2 torch threads",
        "load_average_start": round(load, 1),
        "load_average_end": round(os.getloadavg()[0], 1),
        "before": before,
        "after": after,
        "ratio": round(ratio, 2),
        "same_completions": before["texts_sha256"] == after["texts_sha256"],
    }
    write_result(args, result)
    print(
        f"ratio {ratio:.2f}x; same completions: {result['same_completions']}; "
        f"load average {result['load_average_start']} -> {result['load_average_end']}"
    )


if __name__ == "__main__":
    main()
