"""Linear merge of 3 SmolLM2-sized checkpoints: assay's streaming merger vs mergekit 0.1.5.

Both run as subprocesses on the same mergekit-format YAML (assay accepts it), in one run,
alternating, with the inputs in the page cache and earlier outputs synced and deleted first.
Measured: wall time (of the whole process: start-up, imports, merge, tokenizer copy), and peak
RSS two ways: the kernel's high-water mark of the largest process (`/usr/bin/time -f %M`) and the
sum over the process tree sampled every 10 ms.
Each output is compared tensor by tensor with the float64 weighted sum. Goals: assay at least 2x
faster, at most a third of mergekit's peak memory, and within 1e-6 of the exact sum.

    .venv/bin/python benchmarks/merge_vs_mergekit.py [--repeats 3] [--keep]

Inputs: the stored smollm2-135m-instruct (`assay models pull smollm2-135m-instruct`) plus two
perturbed copies, or, without it, three random SmolLM2-shaped Llamas (seeds 0-2); fp32, 538 MB
each, under --work (default /tmp/assay-merge-bench, about 3 GB, deleted unless --keep). mergekit
is installed in its own virtual environment (--mergekit-venv) if it is not there yet:
`pip install torch==2.13.0` first (the CPU wheel on this disk) and then `mergekit==0.1.5`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from results_io import add_output_args, write_result

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = [0.5, 0.3, 0.2]
MERGEKIT_VERSION = "0.1.5"


def log(message: str) -> None:
    print(message, flush=True)


def ensure_mergekit(venv: Path) -> Path:
    """The mergekit-yaml of a separate venv, created with torch pinned first if missing."""
    exe = venv / "bin" / "mergekit-yaml"
    if exe.is_file():
        return exe
    log(f"creating {venv} with mergekit=={MERGEKIT_VERSION} (torch==2.13.0 installed first)")
    python = shutil.which("python3.11") or shutil.which("python3") or sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, f"mergekit=={MERGEKIT_VERSION}"], check=True)
    return exe


def make_inputs(work: Path) -> tuple[list[Path], str]:
    """Three SmolLM2-sized fp32 checkpoints: the stored model and perturbed copies, or random ones."""
    import torch

    from trainer.merging.safetensors_io import Checkpoint, ShardedWriter, TensorSpec

    stored = Path("~/.cache/assay/models/smollm2-135m-instruct").expanduser()
    folders = [work / f"expert-{i}" for i in range(3)]
    if (stored / "model.safetensors").is_file():
        source = "stored smollm2-135m-instruct + 2 perturbed copies (noise std 0.01)"
        for index, folder in enumerate(folders):
            folder.mkdir(parents=True)
            for file in stored.iterdir():
                if file.suffix != ".safetensors" and file.name != "assay_model.json":
                    shutil.copyfile(file, folder / file.name)
            generator = torch.Generator().manual_seed(index)
            with Checkpoint(stored) as checkpoint:
                specs = [TensorSpec(n, i.dtype, i.shape) for n, i in checkpoint.tensors.items()]
                with ShardedWriter(folder, specs, 5 * 10**9) as writer:
                    for spec in writer.order:
                        raw = checkpoint.read_bytes(spec.name)
                        assert spec.dtype == "F32", "the stored model is saved as fp32"
                        tensor = torch.frombuffer(raw, dtype=torch.float32).reshape(spec.shape)
                        if index:
                            tensor = tensor + 0.01 * torch.randn(spec.shape, generator=generator)
                        writer.write(spec.name, tensor)
        return folders, source
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny_causal_lm

    tokenizer_source = build_tiny_causal_lm(work / "tokenizer-source")
    config = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    for seed, folder in enumerate(folders):
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(folder)
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (tokenizer_source / name).is_file():
                shutil.copyfile(tokenizer_source / name, folder / name)
    return folders, "random SmolLM2-shaped Llamas (seeds 0, 1, 2)"


def measure(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command; wall time, kernel peak RSS of its largest process, sampled process-tree RSS.

    The peak comes from `/usr/bin/time` as the command's parent: the high-water mark a child
    reports through wait4 includes the memory image it was forked from, so the small `time`
    process must do the fork, not this (torch-importing) script.
    """
    import psutil

    timer = shutil.which("time") or "/usr/bin/time"
    peak_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"merge-bench-peak-{os.getpid()}.txt"
    started = time.perf_counter()
    process = subprocess.Popen(
        [timer, "-f", "%M", "-o", str(peak_file), *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tree_peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal tree_peak
        try:
            root = psutil.Process(process.pid)
            while not stop.is_set():
                total = 0
                for proc in root.children(recursive=True):  # the command's tree, without `time`
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                tree_peak = max(tree_peak, total)
                time.sleep(0.01)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.stdout.read() if process.stdout else ""
    process.wait()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output[-4000:]}")
    peak_kb = int(peak_file.read_text().split()[-1])
    peak_file.unlink()
    return {"wall_s": wall, "peak_rss_gb": peak_kb * 1024 / 1e9, "tree_rss_gb": tree_peak / 1e9}


def settle(inputs: list[Path], outputs: list[Path]) -> None:
    """Same start for every run: old outputs deleted and flushed, inputs read into the page cache."""
    for out in outputs:
        shutil.rmtree(out, ignore_errors=True)
    os.sync()
    for folder in inputs:
        for file in folder.glob("*.safetensors"):
            with open(file, "rb") as handle:
                while handle.read(64 * 2**20):
                    pass


def compare(folder: Path, inputs: list[Path]) -> dict[str, Any]:
    """Max |output - float64 weighted sum| over all tensors, one tensor at a time."""
    from safetensors import safe_open

    from trainer.merging.safetensors_io import weight_files

    def open_all(path: Path) -> dict[str, Any]:
        handles = {}
        for file in weight_files(path):
            handle = safe_open(file, framework="pt")
            handles.update({name: handle for name in handle.keys()})  # noqa: SIM118
        return handles

    merged, sources = open_all(folder), [open_all(p) for p in inputs]
    worst, worst_name = 0.0, ""
    for name in sorted(merged):
        exact = sum(w * src[name].get_tensor(name).double() for w, src in zip(WEIGHTS, sources, strict=True))
        diff = (merged[name].get_tensor(name).double() - exact).abs().max().item()
        if diff > worst:
            worst, worst_name = diff, name
    return {
        "tensors": len(merged),
        "missing": sorted(set(sources[0]) - set(merged)),
        "extra": sorted(set(merged) - set(sources[0])),
        "max_abs_diff": worst,
        "worst_tensor": worst_name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/assay-merge-bench"))
    parser.add_argument("--mergekit-venv", type=Path, default=Path("/tmp/mergekit-venv"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="Keep the checkpoints and outputs.")
    add_output_args(parser, "merge_vs_mergekit")
    args = parser.parse_args()

    mergekit = ensure_mergekit(args.mergekit_venv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    try:
        started = time.perf_counter()
        inputs, source = make_inputs(args.work)
        size = sum(f.stat().st_size for f in inputs[0].glob("*.safetensors"))
        log(f"inputs: {source}; {size / 1e6:.0f} MB each ({time.perf_counter() - started:.0f} s to make)")
        config = args.work / "linear.yaml"  # mergekit's format; assay reads the same file
        config.write_text(
            yaml.safe_dump(
                {
                    "models": [
                        {"model": str(p), "parameters": {"weight": w}}
                        for p, w in zip(inputs, WEIGHTS, strict=True)
                    ],
                    "merge_method": "linear",
                    "dtype": "float32",
                },
                sort_keys=False,
            )
        )
        mergekit_out = args.work / "mergekit-out"
        assay_home = args.work / "assay-home"
        env = {**os.environ, "ASSAY_HOME": str(assay_home)}
        # The Typer app that `assay merge` runs, started the same way as mergekit: a fresh process.
        cli = "from assay.cli.merge import app; app(prog_name='assay merge')"
        assay_command = [sys.executable, "-c", cli, str(config)]
        runs: dict[str, list[dict[str, Any]]] = {"mergekit": [], "assay": []}
        for repeat in range(args.repeats):
            settle(inputs, [mergekit_out])
            runs["mergekit"].append(measure([str(mergekit), str(config), str(mergekit_out)]))
            settle(inputs, [assay_home])
            runs["assay"].append(measure(assay_command, env=env))
            log(
                f"run {repeat + 1}: mergekit {runs['mergekit'][-1]['wall_s']:.2f} s "
                f"{runs['mergekit'][-1]['peak_rss_gb']:.2f} GB; assay {runs['assay'][-1]['wall_s']:.2f} s "
                f"{runs['assay'][-1]['peak_rss_gb']:.2f} GB"
            )
        (assay_out,) = [p for p in (assay_home / "models").iterdir() if not p.name.startswith(".")]
        accuracy = {"mergekit": compare(mergekit_out, inputs), "assay": compare(assay_out, inputs)}
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)

    medians = {
        tool: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for tool, results in runs.items()
    }
    speedup = medians["mergekit"]["wall_s"] / medians["assay"]["wall_s"]
    memory = medians["assay"]["peak_rss_gb"] / medians["mergekit"]["peak_rss_gb"]
    tree_memory = medians["assay"]["tree_rss_gb"] / medians["mergekit"]["tree_rss_gb"]
    goals = {
        "speedup_at_least_2x": speedup >= 2.0,
        "memory_at_most_a_third": memory <= 1 / 3,
        "assay_within_1e-6": accuracy["assay"]["max_abs_diff"] <= 1e-6 and not accuracy["assay"]["missing"],
    }
    result = {
        "benchmark": "merge_vs_mergekit",
        "inputs": source,
        "input_bytes_each": size,
        "weights": WEIGHTS,
        "mergekit_version": MERGEKIT_VERSION,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "repeats": args.repeats,
        "runs": runs,
        "median": medians,
        "speedup": speedup,
        "memory_ratio": memory,
        "tree_memory_ratio": tree_memory,
        "accuracy": accuracy,
        "goals": goals,
    }
    write_result(args, result)
    for tool in ("mergekit", "assay"):
        m, a = medians[tool], accuracy[tool]
        log(
            f"{tool:8s} median of {args.repeats}: {m['wall_s']:.2f} s wall, "
            f"peak RSS {m['peak_rss_gb']:.2f} GB "
            f"(process tree {m['tree_rss_gb']:.2f} GB); max |out - exact| {a['max_abs_diff']:.2e} "
            f"over {a['tensors']} tensors"
        )
    log(f"speed: assay {speedup:.1f}x faster than mergekit (goal >= 2x)")
    log(f"memory: assay peak RSS {memory:.3f} of mergekit's (process tree {tree_memory:.3f}; goal <= 0.333)")
    log("goals: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in goals.items()))


if __name__ == "__main__":
    main()
