"""The main job's generation speed: each raw engine against the pipeline (`assay run`), in one run.

On the demo's own prompts and sampling (examples/best_of_n_ifeval.yaml: the rendered seed
prompts, n=4 at temperatures 0.3/0.7/1.0/1.3, top_p 0.95, at most 160 new tokens, seed 0):

1. each raw engine (`HFEngine` with the demo's 2 torch threads, `VLLMEngine` as `make demo`
   configures it: 2 OpenMP threads, float32 unless `--vllm-dtype bfloat16`), loaded once in this
   process and fed the demo's batches back to back: completion tokens per second of generation,
   and with the engine's start added;
2. `assay run` on the same spec and rows (a fresh registry, `--no-cache`), as a subprocess with
   each engine: the job's generation rate (its accounting) and its end-to-end rate (completion
   tokens over the command's whole wall time: Ray, model load, generation, verification,
   registration).

Prints the ratios against the fastest raw engine and writes a JSON result. Run it under the
shared lock; `--limit` cuts the prompts (the demo has 50):

    .venv/bin/python benchmarks/demo_speed.py --limit 25
"""

import argparse
import gc
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from results_io import add_output_args, write_result

from assay.settings import model_store_dir
from datagen.engines.config import HFEngineConfig, VLLMEngineConfig
from datagen.job import prepare_job
from datagen.spec import load_spec
from datasets_registry import Registry
from model_store import ModelStore

ROOT = Path(__file__).resolve().parents[1]
# The environment `assay run` gets: vLLM, started in this process for the raw engine, sets
# variables (LD_PRELOAD, VLLM_DIST_IDENT, ...) that must not reach the pipeline's processes.
START_ENV = dict(os.environ)
DEMO = ROOT / "examples" / "best_of_n_ifeval.yaml"
ASSAY = Path(sys.executable).parent / "assay"


def vllm_demo_engine(model: str, batch_size: int, dtype: str) -> dict[str, Any]:
    """The demo's generate engine on vllm, as the Makefile's `demo` target sets it."""
    return {"backend": "vllm", "model": model, "batch_size": batch_size, "torch_threads": 2, "dtype": dtype}


def hf_demo_engine(model: str, batch_size: int) -> Any:
    """The demo's own `hf` engine (its batch size, 2 torch threads), loaded from the model store."""
    from datagen.engines.hf import HFEngine

    resolved = ModelStore(model_store_dir()).resolve(model)
    return HFEngine(HFEngineConfig(model=model, batch_size=batch_size, torch_threads=2), resolved)


def texts_digest(texts: Iterable[str]) -> str:
    """A short digest of completion texts in order: seeded runs that draw the same texts match."""
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]


def engine_overrides(backend: str, model: str, batch_size: int, dtype: str) -> list[str]:
    """`--set` values that put the demo's generate stage on `backend`."""
    if backend == "hf":  # the demo's own engine block
        return [f"stages.1.engine.model={model}"]
    fields = ", ".join(f"{key}: {value}" for key, value in vllm_demo_engine(model, batch_size, dtype).items())
    return [f"stages.1.engine={{{fields}}}"]


def demo_batches(limit: int | None, model: str) -> tuple[list[list[list[dict]]], Any, int]:
    """The demo's conversations (rendered by its own render stage), cut into its batches."""
    overrides = [f"stages.1.engine.model={model}"] + ([f"source.limit={limit}"] if limit else [])
    loaded = load_spec(DEMO, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        job = prepare_job(loaded, Registry(tmp), ModelStore(model_store_dir()), use_cache=False)
    render, generate = job.stages[0], job.stages[1]
    assert job.source.table is not None
    rows = job.source.table.to_pylist()
    conversations = [render.process_row(row)["prompt_messages"] for row in rows]
    batch = generate.teachers[0].engine.batch_size
    batches = [conversations[i : i + batch] for i in range(0, len(conversations), batch)]
    return batches, generate.sampling, batch


def raw_engine(backend: str, model: str, batches: list, sampling: Any, batch_size: int, dtype: str) -> dict:
    """Load one engine, then generate the demo's batches one after another."""
    from datagen.engines.vllm_engine import VLLMEngine

    started = time.perf_counter()
    if backend == "hf":
        engine: Any = hf_demo_engine(model, batch_size)
    else:
        resolved = ModelStore(model_store_dir()).resolve(model)
        engine = VLLMEngine(VLLMEngineConfig(**vllm_demo_engine(model, batch_size, dtype)), resolved)
    start_s = time.perf_counter() - started
    tokens = completions = 0
    started = time.perf_counter()
    for batch in batches:
        for samples in engine.generate(batch, sampling):
            completions += len(samples)
            tokens += sum(c.completion_tokens for c in samples)
    generate_s = time.perf_counter() - started
    if backend == "vllm":
        # Stop vLLM's engine processes now: left alone they outlived this script (2026-12-05 run).
        engine.llm.llm_engine.engine_core.shutdown()
    del engine
    gc.collect()
    return {
        "start_s": round(start_s, 1),
        "generate_s": round(generate_s, 1),
        "completions": completions,
        "tokens": tokens,
        "tokens_per_s": round(tokens / generate_s, 1),
        "tokens_per_s_with_start": round(tokens / (start_s + generate_s), 1),
    }


def pipeline(backend: str, model: str, limit: int | None, batch_size: int, dtype: str) -> dict:
    """`assay run` the demo on one engine with a fresh registry and no cache."""
    with tempfile.TemporaryDirectory() as registry:
        args = [str(ASSAY), "run", str(DEMO), "--no-cache"]
        values = engine_overrides(backend, model, batch_size, dtype)
        values += [f"source.limit={limit}"] if limit else []
        for value in values:
            args += ["--set", value]
        env = {**START_ENV, "ASSAY_REGISTRY": registry}
        started = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
        wall_s = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"assay run ({backend}) failed:\n{done.stdout}\n{done.stderr}")
        version = Registry(registry).open("ifeval-sft")
        metrics = version.info.lineage.metrics
        (usage,) = metrics["usage"]["generate"].values()
        dead = "best-of-n-ifeval-dead-letter" in Registry(registry).names()
    return {
        "wall_s": round(wall_s, 1),
        "rows_in": metrics["rows_in"],
        "dead_letters": dead,
        "completions": int(usage["completions"]),
        "tokens": int(usage["completion_tokens"]),
        "generate_s": round(usage["generate_s"], 1),
        "tokens_per_s": round(usage["completion_tokens"] / usage["generate_s"], 1),
        "tokens_per_s_end_to_end": round(usage["completion_tokens"] / wall_s, 1),
        "progress_lines": [line for line in done.stdout.splitlines() if line.startswith("[")][-1:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--limit", type=int, default=None, help="First N demo prompts (default: all 50).")
    parser.add_argument("--engines", default="hf,vllm", help="Comma-separated backends.")
    parser.add_argument("--skip-pipeline", action="store_true", help="Raw engines only.")
    parser.add_argument(
        "--vllm-dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="The vllm engine's weights (`make demo`: float32, see docs/performance.md).",
    )
    add_output_args(parser, "demo_speed")
    args = parser.parse_args()
    backends = [b for b in args.engines.split(",") if b]

    batches, sampling, batch_size = demo_batches(args.limit, args.model)
    prompts = sum(len(b) for b in batches)
    raw = {}
    for backend in backends:
        raw[backend] = raw_engine(backend, args.model, batches, sampling, batch_size, args.vllm_dtype)
        print(f"raw {backend}: {json.dumps(raw[backend])}", flush=True)
    runs = {}
    if not args.skip_pipeline:
        for backend in backends:
            runs[backend] = pipeline(backend, args.model, args.limit, batch_size, args.vllm_dtype)
            print(f"assay run {backend}: {json.dumps(runs[backend])}", flush=True)
    fastest = max(raw, key=lambda b: raw[b]["tokens_per_s"])
    best = raw[fastest]
    ratios = {
        backend: {
            "generation_vs_fastest_raw": round(r["tokens_per_s"] / best["tokens_per_s"], 2),
            "end_to_end_vs_fastest_raw_with_start": round(
                r["tokens_per_s_end_to_end"] / best["tokens_per_s_with_start"], 2
            ),
        }
        for backend, r in runs.items()
    }
    result = {
        "benchmark": "demo_speed",
        "model": args.model,
        "prompts": prompts,
        "sampling": sampling.model_dump(),
        "batch_size": batch_size,
        "vllm_dtype": args.vllm_dtype,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}",
        "raw": raw,
        "pipeline": runs,
        "fastest_raw": fastest,
        "ratios": ratios,
    }
    write_result(args, result)
    for backend, r in raw.items():
        print(
            f"raw {backend:4s}: {r['tokens_per_s']:.1f} tok/s "
            f"({r['tokens']} tokens in {r['generate_s']:.1f} s; "
            f"start {r['start_s']:.1f} s, {r['tokens_per_s_with_start']:.1f} tok/s with it)"
        )
    for backend, r in runs.items():
        print(
            f"assay run {backend:4s}: {r['tokens_per_s']:.1f} tok/s of generation, "
            f"{r['tokens_per_s_end_to_end']:.1f} tok/s end to end ({r['wall_s']:.1f} s wall, "
            f"{r['tokens']} tokens, {r['rows_in']} rows, dead letters: {r['dead_letters']})"
        )
        print(
            f"ratio {backend} pipeline / raw {fastest}: {ratios[backend]['generation_vs_fastest_raw']:.2f}x "
            f"generation, {ratios[backend]['end_to_end_vs_fastest_raw_with_start']:.2f}x end to end "
            "(against the raw engine with its start)"
        )


if __name__ == "__main__":  # vLLM starts its engine in subprocesses that import this module
    main()
