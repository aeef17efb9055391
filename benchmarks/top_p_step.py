"""One sampling step's top-p on one core: vLLM's full-vocabulary sort against our nucleus mask.

100 rows of SmolLM2's 49,152 logits (the demo's 25 prompts x 4 samples in one vLLM step), drawn
at random with a scale that gives each row a nucleus of a few to a few tens of tokens at p 0.95,
as a chat model's next-token distributions mostly are. Times vLLM's CPU top-p
(`apply_top_k_top_p_pytorch`) and `datagen.engines.nucleus.mask_outside_nucleus` with one torch
thread, median of 5, checks both keep the same tokens, prints the ratio and writes JSON.

    .venv/bin/python benchmarks/top_p_step.py
"""

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from results_io import add_output_args, write_result

from datagen.engines.nucleus import mask_outside_nucleus


def median_ms(run: Callable[[], torch.Tensor], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--scale", type=float, default=8.0, help="Std of the random logits.")
    add_output_args(parser, "top_p_step")
    args = parser.parse_args()
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    torch.set_num_threads(1)
    logits = torch.randn(args.rows, 49_152, generator=torch.Generator().manual_seed(0)) * args.scale
    top_p = torch.full((args.rows,), 0.95)
    theirs = apply_top_k_top_p_pytorch(logits.clone(), None, top_p, allow_cpu_sync=True)
    ours = mask_outside_nucleus(logits.clone(), top_p)
    same = bool(torch.equal(theirs.isinf(), ours.isinf()))
    sort_ms = median_ms(lambda: apply_top_k_top_p_pytorch(logits.clone(), None, top_p, allow_cpu_sync=True))
    nucleus_ms = median_ms(lambda: mask_outside_nucleus(logits.clone(), top_p))
    copy_ms = median_ms(logits.clone)  # both timings include one copy of the logits
    result = {
        "benchmark": "top_p_step",
        "rows": args.rows,
        "scale": args.scale,
        "kept_tokens_per_row": round(float((~ours.isinf()).sum(dim=-1).float().mean()), 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, 1 torch thread, "
        f"load average {os.getloadavg()[0]:.1f}",
        "vllm_sort_ms": sort_ms,
        "nucleus_ms": nucleus_ms,
        "copy_ms": copy_ms,
        "ratio": round(sort_ms / nucleus_ms, 1),
        "same_tokens_kept": same,
    }
    write_result(args, result)
    print(
        f"vLLM's top-p (full sort): {sort_ms} ms; nucleus mask: {nucleus_ms} ms "
        f"({result['ratio']}x faster; logits copy {copy_ms} ms in both); "
        f"{result['kept_tokens_per_row']} tokens kept per row; same tokens kept: {same}"
    )


if __name__ == "__main__":
    main()
