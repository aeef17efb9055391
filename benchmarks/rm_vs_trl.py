"""Reward-model training throughput: assay's packed pairs vs TRL's RewardTrainer (pad to longest).

Both train SmolLM2-135M-Instruct as a reward model on the same hh-rlhf harmless-base train
pairs (the issue's split, the first --pairs of it), batch 8 pairs, peak lr 1e-5, one epoch,
max length 512 (pairs with a longer side dropped, as TRL does), 2 torch threads, fp32, each in
its own process, in one run (TRL first, then assay with and without gradient checkpointing;
--rounds repeats them, and the figures are medians over rounds). --micro-batch-pairs 8,2 also
runs assay with forward passes of fewer pairs (gradient accumulation keeps 8 pairs per step).
Measured: training seconds (the training loop only: no model load, no tokenization), non-pad
tokens trained on per second, the share of computed token slots that are padding, and the peak
RSS of the process (kernel high-water mark, model load included).
Goals (issue 6): non-pad tokens/s at least 1.5x TRL's, fill at least 70 %, peak memory below TRL's.

    .venv/bin/python benchmarks/rm_vs_trl.py [--pairs 64] [--rounds 1] \
        [--micro-batch-pairs 8]

TRL lives in its own virtual environment (--trl-python, default /tmp/trl-venv/bin/python), made
with `python -m venv /tmp/trl-venv`, a .pth file naming this project's site-packages (so torch
and transformers are the same builds), and `pip install trl datasets` (trl 1.16.0 here).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_io import add_output_args, write_result

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
MODEL = Path(os.environ.get("ASSAY_HOME", "~/.cache/assay")).expanduser() / "models" / "smollm2-135m-instruct"
BATCH, LR, MAX_LENGTH, THREADS = 8, 1e-5, 512, 2


def log(message: str) -> None:
    print(message, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_pairs(n: int) -> list[dict[str, Any]]:
    """The first n pairs of the issue's train split, as prompt/chosen/rejected messages."""
    sys.path.insert(0, str(ROOT))
    from reward_model.data import hh_rlhf_pair, hh_rlhf_split

    records = [json.loads(line) for line in gzip.decompress(DATA.read_bytes()).decode().splitlines() if line]
    train, _ = hh_rlhf_split(records)
    return [hh_rlhf_pair(records[i]) for i in train[:n]]


def worker_trl(pairs: list[dict[str, Any]], out: dict[str, Any]) -> None:
    """TRL's RewardTrainer with its defaults (pad to the longest in the batch)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    counts = {"real": 0, "slots": 0}

    class CountingCollator(DataCollatorForPreference):
        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            batch = super().torch_call(examples)
            counts["real"] += int(batch["attention_mask"].sum())
            counts["slots"] += batch["attention_mask"].numel()
            return batch

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-rm-"), per_device_train_batch_size=BATCH, learning_rate=LR,
        num_train_epochs=1, max_length=MAX_LENGTH, use_cpu=True, report_to=[], save_strategy="no",
        logging_steps=10_000, bf16=False, dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tokenizer,
        data_collator=CountingCollator(pad_token_id=tokenizer.pad_token_id),
    )  # fmt: skip
    out["pairs_kept"] = len(trainer.train_dataset)
    started = time.monotonic()
    trainer.train()
    out["train_s"] = time.monotonic() - started
    out["real_tokens"], out["slots"] = counts["real"], counts["slots"]
    out["steps"] = trainer.state.global_step


def worker_assay(
    pairs: list[dict[str, Any]], out: dict[str, Any], checkpointing: bool, micro_batch_pairs: int
) -> None:
    """assay's reward model: packed rows (fill target 75 %), the same batch, lr and epoch; a
    forward pass takes whole rows holding at least `micro_batch_pairs` pairs."""
    from transformers import AutoTokenizer

    from reward_model.config import RMConfig, StageConfig
    from reward_model.data import tokenize_pairs, validate_pairs
    from reward_model.model import RewardModel
    from reward_model.train import train_stage

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    valid, _ = validate_pairs(pairs, source="hh", invalid="error")
    tokenized, counts = tokenize_pairs(tokenizer, valid, MAX_LENGTH, truncation="drop")
    out["pairs_kept"] = counts.kept
    model = RewardModel.from_backbone(MODEL, seed=0)
    model.hf.config.pad_token_id = tokenizer.pad_token_id
    if checkpointing:  # as TRL's RewardConfig does by default
        model.hf.gradient_checkpointing_enable()
    config = RMConfig(datasets=["bench"], max_length=MAX_LENGTH, log_every=10_000, seed=0)
    stage = StageConfig(
        learning_rate=LR, pairs_per_step=BATCH, micro_batch_pairs=micro_batch_pairs, warmup_ratio=0.0
    )
    metrics = train_stage(model, tokenized, stage, config, tokenizer.pad_token_id, packed=True, log=log)
    out["train_s"] = metrics["seconds"]
    out["real_tokens"] = metrics["real_tokens"]
    out["slots"] = round(metrics["real_tokens"] / metrics["fill"])
    out["pairs_per_row"] = metrics["pairs_per_row"]
    out["steps"] = metrics["steps"]


def run_worker(kind: str, python: str, pairs_file: Path) -> dict[str, Any]:
    """Run one side in its own process and read back what it measured."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_file = Path(handle.name)
    command = [
        python,
        __file__,
        "--worker",
        kind,
        "--pairs-file",
        str(pairs_file),
        "--result",
        str(result_file),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    started, load_before = time.monotonic(), os.getloadavg()[0]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    result = json.loads(result_file.read_text())
    result["process_s"] = round(time.monotonic() - started, 1)
    # The machine may be shared: the 1-minute load average before and after says how much.
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["non_pad_tokens_per_s"] = round(result["real_tokens"] / result["train_s"], 1)
    result["fill"] = round(result["real_tokens"] / result["slots"], 4)
    log(f"{kind}: {json.dumps(result)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--trl-python", default="/tmp/trl-venv/bin/python")
    parser.add_argument(
        "--checkpointing",
        choices=["on", "off", "both"],
        default="both",
        help="assay with gradient checkpointing (TRL's default), without, or both (default)",
    )
    parser.add_argument(
        "--micro-batch-pairs",
        default=str(BATCH),
        help="assay's pairs per forward pass, comma-separated to compare several (default: the whole batch)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    add_output_args(parser, "rm_vs_trl")
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(THREADS)
        torch.manual_seed(0)
        out: dict[str, Any] = {}
        pairs = json.loads(args.pairs_file.read_text())
        if args.worker == "trl":
            worker_trl(pairs, out)
        else:  # assay[-gc]/<micro batch pairs>
            kind, micro = args.worker.split("/")
            worker_assay(pairs, out, checkpointing=kind == "assay-gc", micro_batch_pairs=int(micro))
        out["peak_rss_mb"] = round(peak_rss_mb(), 1)
        args.result.write_text(json.dumps(out))
        return
    if not MODEL.is_dir():
        raise SystemExit(f"{MODEL} is missing: run `assay models pull smollm2-135m-instruct`")
    pairs = make_pairs(args.pairs)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(pairs, handle)
    pairs_file = Path(handle.name)
    trl_version = subprocess.run([args.trl_python, "-c", "import trl; print(trl.__version__)"],
                                 capture_output=True, text=True).stdout.strip()  # fmt: skip
    kinds = {"on": ["assay-gc"], "off": ["assay"], "both": ["assay-gc", "assay"]}[args.checkpointing]
    variants = [f"{kind}/{int(m)}" for m in args.micro_batch_pairs.split(",") for kind in kinds]
    rounds = []
    for number in range(args.rounds):
        log(
            f"round {number + 1}/{args.rounds}: TRL {trl_version}, then {', '.join(variants)}, "
            f"{args.pairs} pairs"
        )
        measured = {"trl": run_worker("trl", args.trl_python, pairs_file)}
        for variant in variants:
            measured[variant] = run_worker(variant, sys.executable, pairs_file)
        rounds.append(measured)
    summary: dict[str, Any] = {
        "benchmark": "rm_vs_trl",
        "setup": {
            "model": "smollm2-135m-instruct",
            "pairs": args.pairs,
            "batch_pairs": BATCH,
            "lr": LR,
            "max_length": MAX_LENGTH,
            "torch_threads": THREADS,
            "trl": f"{trl_version} RewardTrainer defaults (pad to longest, gradient checkpointing on)",
            "assay-gc/N": "packed, gradient checkpointing on (as TRL), N pairs per forward pass",
            "assay/N": "packed, no gradient checkpointing, N pairs per forward pass",
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, shared with other jobs",
        },
        "rounds": rounds,
        "trl_fill": statistics.median(r["trl"]["fill"] for r in rounds),
    }
    for variant in variants:
        speedup = statistics.median(
            r[variant]["non_pad_tokens_per_s"] / r["trl"]["non_pad_tokens_per_s"] for r in rounds
        )
        memory = statistics.median(r[variant]["peak_rss_mb"] / r["trl"]["peak_rss_mb"] for r in rounds)
        fill = statistics.median(r[variant]["fill"] for r in rounds)
        summary[variant] = {
            "speedup_non_pad_tokens_per_s": round(speedup, 2),
            "fill": fill,
            "peak_memory_ratio": round(memory, 3),
            "goals_met": {
                "speedup_at_least_1.5": speedup >= 1.5,
                "fill_at_least_0.70": fill >= 0.70,
                "less_peak_memory": memory < 1.0,
            },  # fmt: skip
        }
        trl_fill = summary["trl_fill"]
        log(
            f"{variant} vs TRL: {speedup:.2f}x non-pad tokens/s, fill {fill:.1%} vs {trl_fill:.1%}, "
            f"peak RSS ratio {memory:.3f}"
        )
    write_result(args, summary)
    pairs_file.unlink()


if __name__ == "__main__":
    main()
