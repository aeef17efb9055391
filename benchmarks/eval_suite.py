"""Time the evaluation suites on SmolLM2-135M-Instruct (hf engine), against the raw engine.

For each suite: the harness (`evals.run.evaluate` through `EngineGenerator`: batching, the
cached-call path with the cache off, prompt checks, scoring) and, as the baseline, the same
conversations with the same sampling sent straight to the same loaded `HFEngine.generate` in
batches of the same size. Greedy decoding, so both produce the same tokens; the script checks
that and prints the harness/baseline ratio per suite, of wall time and of this process's CPU
time (on a shared machine other processes stretch wall time; CPU time is what the harness
itself adds), with the scores seen.

    .venv/bin/python benchmarks/eval_suite.py --limit 16 --max-tokens 128
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import add_output_args, write_result  # noqa: E402


class Recorder:
    """A Generator wrapper that keeps every call's conversations and sampling for the baseline."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_identity = inner.model_identity
        self.stats = inner.stats
        self.calls: list[tuple[list[Any], dict[str, Any], list[Any]]] = []

    def complete(self, conversations: Sequence[Any], **sampling: Any) -> list[Any]:
        replies = self.inner.complete(conversations, **sampling)
        self.calls.append((list(conversations), sampling, replies))
        return replies


def raw_engine_pass(
    engine: Any, calls: list[tuple[list[Any], dict[str, Any], list[Any]]], batch: int
) -> dict:
    """The baseline: the recorded calls straight through `engine.generate`, batch by batch."""
    from datagen.engines.config import SamplingConfig

    started, cpu_started = time.monotonic(), time.process_time()
    tokens = 0
    same = True
    for conversations, sampling, replies in calls:
        config = SamplingConfig(
            n=sampling.get("n", 1),
            temperature=sampling.get("temperature", 0.0),
            max_tokens=sampling.get("max_tokens", 512),
            seed=sampling.get("seed", 0),
        )
        for start in range(0, len(conversations), batch):
            outcomes = engine.generate(conversations[start : start + batch], config)
            for outcome, reply in zip(outcomes, replies[start : start + batch], strict=True):
                tokens += sum(c.completion_tokens for c in outcome)
                same = same and [c.text for c in outcome] == reply
    return {
        "wall_s": round(time.monotonic() - started, 2),
        "cpu_s": round(time.process_time() - cpu_started, 2),
        "completion_tokens": tokens,
        "same_texts": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--suites", default="ifeval,mgsm,xstest")
    parser.add_argument("--limit", type=int, default=16, help="items per suite")
    parser.add_argument("--max-tokens", type=int, default=128, help="reply limit for every suite")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--items-out", type=Path, default=None, help="also write every suite's item records")
    add_output_args(parser, "eval_suite")
    args = parser.parse_args()

    from datagen.engines.config import HFEngineConfig
    from evals.generation import EngineGenerator
    from evals.run import evaluate

    config = HFEngineConfig(model=args.model, batch_size=args.batch_size, torch_threads=args.threads)
    generator = EngineGenerator(config, cache_uri="")  # no cache: both sides generate everything
    engine = generator.engine
    engine.generate([[{"role": "user", "content": "Hi"}]], _greedy(8))  # warm-up, not timed

    rows = []
    items: dict[str, list[dict[str, Any]]] = {}
    for suite in args.suites.split(","):
        recorder = Recorder(generator)
        started, cpu_started = time.monotonic(), time.process_time()
        (run,) = evaluate(recorder, [suite], limit=args.limit, options={"max_tokens": args.max_tokens})
        harness_s, harness_cpu = time.monotonic() - started, time.process_time() - cpu_started
        baseline = raw_engine_pass(engine, recorder.calls, args.batch_size)
        tokens = run.generation.get("completion_tokens", 0)
        row = {
            "suite": suite,
            "items": len(run.result.items),
            "harness_s": round(harness_s, 2),
            "baseline_s": baseline["wall_s"],
            "ratio": round(harness_s / baseline["wall_s"], 3) if baseline["wall_s"] else None,
            "harness_cpu_s": round(harness_cpu, 2),
            "baseline_cpu_s": baseline["cpu_s"],
            "cpu_ratio": round(harness_cpu / baseline["cpu_s"], 3) if baseline["cpu_s"] else None,
            "completion_tokens": tokens,
            "tokens_per_s": round(tokens / harness_s, 1) if harness_s else None,
            "baseline_tokens": baseline["completion_tokens"],
            "same_texts": baseline["same_texts"],
            "metrics": [m.as_dict() for m in run.result.metrics if "." not in m.name],
        }
        rows.append(row)
        items[suite] = run.result.items
        print(
            f"{suite}: {row['items']} items, harness {row['harness_s']} s, raw engine {row['baseline_s']} s "
            f"(ratio {row['ratio']}); CPU {row['harness_cpu_s']} s vs {row['baseline_cpu_s']} s "
            f"(ratio {row['cpu_ratio']}); {tokens} completion tokens, {row['tokens_per_s']} tok/s, "
            f"same texts: {row['same_texts']}",
            flush=True,
        )
        for metric in row["metrics"]:
            print(f"    {metric['name']}: {metric['value']:.3f} ± {metric['stderr']:.3f} (n={metric['n']})")
    result = {
        "model": generator.model_identity,
        "limit": args.limit,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "suites": rows,
    }
    write_result(args, result)
    if args.items_out is not None:
        args.items_out.write_text(json.dumps(items, ensure_ascii=False, indent=1))


def _greedy(max_tokens: int) -> Any:
    from datagen.engines.config import SamplingConfig

    return SamplingConfig(n=1, temperature=0.0, max_tokens=max_tokens)


if __name__ == "__main__":
    main()
