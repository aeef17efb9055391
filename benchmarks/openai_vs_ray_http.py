"""The `openai` engine vs ray.data.llm's HTTP request processor, against one local server.

Both send the same N chat-completions requests to the same OpenAI-compatible test server
(tests/datagen/openai_server.py) on 127.0.0.1 that answers each after `--latency-s`. The figure is
requests per second over the wall time of the whole call (ray.data.llm: `take_all()` of the
processed dataset; ours: one `generate` call with `max_in_flight` 32), and the server-side
rate and peak concurrency over the same requests. Prints the ratio and writes a JSON result.

    .venv/bin/python benchmarks/openai_vs_ray_http.py [--rows 200] [--latency-s 0.1]
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "datagen"))

from openai_server import FakeOpenAIServer, reply_text  # noqa: E402
from results_io import add_output_args, write_result  # noqa: E402

from datagen.engines.config import OpenAIEngineConfig, SamplingConfig  # noqa: E402
from datagen.engines.openai_engine import OpenAIEngine  # noqa: E402

MODEL = "bench-model"
KEY_ENV = "ASSAY_BENCH_OPENAI_KEY"
SAMPLING = SamplingConfig(n=1, temperature=0.7, max_tokens=64, seed=0)


def server_window(server: FakeOpenAIServer, start: int) -> dict:
    """Requests the server saw since log index `start`: count, arrival span, peak concurrency."""
    times = [t for t, _ in server.log[start:]]
    span = times[-1] - times[0] + server.latency_s if times else 0.0
    return {
        "requests": len(times),
        "arrival_span_s": span,
        "server_requests_per_s": len(times) / span if span else 0.0,
        "max_in_flight": server.max_in_flight,
    }


def run_ray(server: FakeOpenAIServer, prompts: list[str], batch_size: int, concurrency: int) -> dict:
    import ray
    import ray.data
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    config = HttpRequestProcessorConfig(
        url=f"{server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {os.environ[KEY_ENV]}"},
        batch_size=batch_size,
        concurrency=concurrency,
        # Fractional CPUs: whole-CPU helper stages can stall a 2-core machine (DESIGN.md).
        http_request_stage=dict(num_cpus=0.1),
    )
    processor = build_processor(
        config,
        preprocess=lambda row: dict(
            prompt=row["prompt"],
            payload=dict(
                model=MODEL,
                messages=[{"role": "user", "content": row["prompt"]}],
                temperature=SAMPLING.temperature,
                max_tokens=SAMPLING.max_tokens,
                seed=SAMPLING.seed,
            ),
        ),
        postprocess=lambda row: dict(
            prompt=row["prompt"], text=row["http_response"]["choices"][0]["message"]["content"]
        ),
        preprocess_map_kwargs=dict(num_cpus=0.1),
        postprocess_map_kwargs=dict(num_cpus=0.1),
    )
    dataset = ray.data.from_items([{"prompt": p} for p in prompts])
    start, server.max_in_flight = len(server.log), 0
    started = time.perf_counter()
    rows = processor(dataset).take_all()
    seconds = time.perf_counter() - started
    wrong = sum(row["text"] != reply_text(row["prompt"], 0.7, 0) for row in rows)
    if len(rows) != len(prompts) or wrong:
        raise SystemExit(f"ray.data.llm: {len(rows)} rows back for {len(prompts)}, {wrong} wrong replies")
    return {
        "batch_size": batch_size,
        "concurrency": concurrency,
        "seconds": seconds,
        "requests_per_s": len(prompts) / seconds,
        **server_window(server, start),
    }


def run_ours(server: FakeOpenAIServer, prompts: list[str], max_in_flight: int) -> dict:
    config = OpenAIEngineConfig(
        backend="openai",
        model=MODEL,
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        max_in_flight=max_in_flight,
    )
    with OpenAIEngine(config) as engine:
        engine.generate([[{"role": "user", "content": "warm-up"}]], SAMPLING)  # opens the session
        start, server.max_in_flight = len(server.log), 0
        started = time.perf_counter()
        results = engine.generate([[{"role": "user", "content": p}] for p in prompts], SAMPLING)
        seconds = time.perf_counter() - started
    wrong = sum(
        not isinstance(r, list) or r[0].text != reply_text(p, 0.7, 0)
        for p, r in zip(prompts, results, strict=True)
    )
    if wrong:
        raise SystemExit(f"openai engine: {wrong} of {len(prompts)} rows failed or were wrong")
    return {
        "max_in_flight": max_in_flight,
        "seconds": seconds,
        "requests_per_s": len(prompts) / seconds,
        **{f"server_{k}" if k == "max_in_flight" else k: v for k, v in server_window(server, start).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--latency-s", type=float, default=0.1)
    parser.add_argument("--max-in-flight", type=int, default=32)
    parser.add_argument("--ray-batch-size", type=int, default=64, help="ray.data.llm's default")
    parser.add_argument("--ray-concurrency", type=int, default=1, help="HTTP workers (actors)")
    add_output_args(parser, "openai_vs_ray_http")
    args = parser.parse_args()

    import ray
    import ray.data

    os.environ.setdefault(KEY_ENV, "sk-bench-local")
    prompts = [f"Question {i}: what is {i} squared?" for i in range(args.rows)]
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING"
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        server = FakeOpenAIServer(latency_s=args.latency_s, api_key=os.environ[KEY_ENV], models=[MODEL])
        with server:
            ray_result = run_ray(server, prompts, args.ray_batch_size, args.ray_concurrency)
            ours = run_ours(server, prompts, args.max_in_flight)
    finally:
        ray.shutdown()
    ratio = ours["requests_per_s"] / ray_result["requests_per_s"]
    result = {
        "benchmark": "openai_vs_ray_http",
        "rows": args.rows,
        "server_latency_s": args.latency_s,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "ray_data_llm_http": ray_result,
        "openai_engine": ours,
        "ratio": ratio,
        "goal": ">= 10x",
    }
    write_result(args, result)
    print(
        f"ray.data.llm HTTP (batch {args.ray_batch_size}, {args.ray_concurrency} worker): "
        f"{ray_result['requests_per_s']:.1f} req/s ({args.rows} requests in {ray_result['seconds']:.1f} s; "
        f"server saw {ray_result['server_requests_per_s']:.1f} req/s, "
        f"at most {ray_result['max_in_flight']} in flight)"
    )
    print(
        f"openai engine (max_in_flight {args.max_in_flight}):     "
        f"{ours['requests_per_s']:.1f} req/s ({args.rows} requests in {ours['seconds']:.2f} s; "
        f"server saw {ours['server_requests_per_s']:.1f} req/s, "
        f"at most {ours['server_max_in_flight']} in flight)"
    )
    print(f"ratio openai engine / ray.data.llm: {ratio:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
