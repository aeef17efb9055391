"""Why vLLM is slower on the demo's sampling than in vllm_vs_hf.py: one factor at a time, one run.

The demo (examples/best_of_n_ifeval.yaml) samples n=4 temperatures per prompt as separate
seeded requests with top_p 0.95 on its own rendered prompts; benchmarks/vllm_vs_hf.py sends one
seeded request per short prompt at temperature 0.7, top_p 1.0. This script loads the `vllm`
engine once per OpenMP thread binding (and weight dtype, `--dtypes`) and times the same token
budget under each setting (vLLM's own `generate`, `ignore_eos` off), cumulative from the
benchmark's settings towards the demo's, then the demo's settings with one factor undone, then
the demo's settings with top-p by the engine's own nucleus processor. For each engine it also
reports how many OpenMP threads the engine's worker process really runs
(`torch.get_num_threads()` there, and its CPU affinity). Prints a table, the ratio of every row
to the first, and a digest of each setting's completions (seeded settings that sample the same
nucleus draw the same texts); writes JSON.

    .venv/bin/python benchmarks/vllm_factors.py --prompts 16 --max-tokens 64
"""

import argparse
import gc
import os
import platform
import time
from typing import Any

from demo_speed import demo_batches, texts_digest
from hf_batching import PROMPTS
from results_io import add_output_args, write_result

from assay.settings import model_store_dir
from datagen.engines.config import VLLMEngineConfig
from model_store import ModelStore

DEMO_TEMPERATURES = [0.3, 0.7, 1.0, 1.3]


def worker_threads(_worker: Any) -> dict[str, Any]:
    """Run inside vLLM's worker process (`collective_rpc` passes the worker): its torch threads,
    OpenMP env and CPU affinity."""
    import os as worker_os

    import torch

    return {
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": worker_os.environ.get("OMP_NUM_THREADS"),
        "affinity": sorted(worker_os.sched_getaffinity(0)),
    }


def settings(max_tokens: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, factors) rows: cumulative from vllm_vs_hf.py's settings to the demo's, then back."""
    bench = {"prompts": "short", "temperatures": [0.7], "top_p": 1.0, "seed": False}
    demo = {"prompts": "demo", "temperatures": DEMO_TEMPERATURES, "top_p": 0.95, "seed": True}
    return [
        ("vllm_vs_hf settings (short prompts, n=1 t=0.7, top_p 1.0, no seed)", bench),
        ("+ per-request seed", bench | {"seed": True}),
        ("+ top_p 0.95", bench | {"seed": True, "top_p": 0.95}),
        ("+ demo prompts", bench | {"seed": True, "top_p": 0.95, "prompts": "demo"}),
        ("+ 4 temperatures as 4 requests (= demo settings)", demo),
        ("demo settings, top_p 1.0", demo | {"top_p": 1.0}),
        ("demo settings, no seed", demo | {"seed": False}),
        ("demo settings, no seed, top_p 1.0", demo | {"seed": False, "top_p": 1.0}),
        ("demo settings, top_p 0.95 by assay's nucleus processor", demo | {"nucleus": "assay"}),
    ]


def run_setting(llm: Any, prompts: dict[str, list[list[int]]], factors: dict, max_tokens: int) -> dict:
    """Time one `generate` call over every (prompt, temperature) request of a setting."""
    from vllm import SamplingParams

    from datagen.engines.vllm_nucleus import TOP_P_ARG

    by_assay = factors.get("nucleus") == "assay"  # top-p masked by our processor, not vLLM's sort
    params = [
        SamplingParams(
            n=1,
            temperature=t,
            top_p=1.0 if by_assay else factors["top_p"],
            extra_args={TOP_P_ARG: factors["top_p"]} if by_assay else None,
            max_tokens=max_tokens,
            seed=k if factors["seed"] else None,
        )
        for k, t in enumerate(factors["temperatures"])
    ]
    ids = prompts[factors["prompts"]]
    requests = [{"prompt_token_ids": p} for p in ids for _ in params]
    started = time.perf_counter()
    outputs = llm.generate(requests, [p for _ in ids for p in params], use_tqdm=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {
        "texts_sha256": texts_digest(o.outputs[0].text for o in outputs),
        "requests": len(requests),
        "prompt_tokens_mean": round(sum(len(p) for p in ids) / len(ids), 1),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def run_engine(
    model: str, bind: str | None, dtype: str, prompt_texts: dict, max_tokens: int, rows: list
) -> dict:
    """Load the engine with one thread binding and dtype, then time every setting in `rows`."""
    from datagen.engines.vllm_engine import VLLMEngine

    if bind is None:
        os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    else:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
    resolved = ModelStore(model_store_dir()).resolve(model)
    started = time.perf_counter()
    engine = VLLMEngine(VLLMEngineConfig(backend="vllm", model=model, batch_size=100, dtype=dtype), resolved)
    start_s = time.perf_counter() - started
    try:
        threads: Any = engine.llm.collective_rpc(worker_threads)[0]
    except Exception as err:  # noqa: BLE001 - a diagnostic only; the table is the result
        threads = f"not readable: {err}"
    prompts = {name: [engine.encode(c) for c in texts] for name, texts in prompt_texts.items()}
    run_setting(engine.llm, prompts, rows[0][1] | {"temperatures": [0.7]}, 8)  # warm-up
    results = []
    for label, factors in rows:
        measured = run_setting(engine.llm, prompts, factors, max_tokens)
        results.append({"setting": label, **measured})
        print(f"[{bind or 'auto'} {dtype}] {label}: {measured}", flush=True)
    engine.llm.llm_engine.engine_core.shutdown()
    del engine
    gc.collect()
    return {
        "bind": bind or "auto (vLLM default)",
        "dtype": dtype,
        "start_s": round(start_s, 1),
        "worker": threads,
        "rows": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--binds",
        default="auto,0-{last}",
        help="VLLM_CPU_OMP_THREADS_BIND values, comma-separated ('auto': vLLM's; {last}: the last CPU).",
    )
    parser.add_argument("--dtypes", default="float32", help="Weight dtypes, comma-separated.")
    parser.add_argument("--rows", default="", help="Only the settings whose label contains this text.")
    add_output_args(parser, "vllm_factors")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # collective_rpc(worker_threads)

    batches, _, _ = demo_batches(args.prompts, args.model)
    demo = [conversation for batch in batches for conversation in batch]
    short = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(args.prompts)]
    prompt_texts = {"short": short, "demo": demo[: args.prompts]}
    last = max(os.sched_getaffinity(0))
    binds = [None if b == "auto" else b.format(last=last) for b in args.binds.split(",") if b]
    rows = [row for row in settings(args.max_tokens) if args.rows in row[0]]
    load = os.getloadavg()[0]
    engines = [
        run_engine(args.model, bind, dtype, prompt_texts, args.max_tokens, rows)
        for dtype in args.dtypes.split(",")
        for bind in binds
    ]
    base = engines[0]["rows"][0]["tokens_per_s"]
    result = {
        "benchmark": "vllm_factors",
        "model": args.model,
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_average_start": round(load, 1),
        "load_average_end": round(os.getloadavg()[0], 1),
        "engines": engines,
    }
    write_result(args, result)
    for engine in engines:
        print(
            f"\nVLLM_CPU_OMP_THREADS_BIND={engine['bind']}, {engine['dtype']}: "
            f"start {engine['start_s']} s, worker {engine['worker']}"
        )
        print(f"{'setting':70s} {'req':>4s} {'tokens':>6s} {'tok/s':>6s} {'vs first':>8s} texts")
        for row in engine["rows"]:
            print(
                f"{row['setting']:70s} {row['requests']:4d} {row['tokens']:6d} "
                f"{row['tokens_per_s']:6.1f} {row['tokens_per_s'] / base:7.2f}x {row['texts_sha256']}"
            )
    print(f"load average {result['load_average_start']} at start, {result['load_average_end']} at end")


if __name__ == "__main__":  # vLLM starts its engine in subprocesses that import this module
    main()
