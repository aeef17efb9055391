"""Decontamination: how long the index over every evaluation set takes to build, how many rows a
second it checks (against a plain per-row Python check of word 8-gram tuples in a dict, measured
in the same run, which finds only word n-grams of full length), and what it finds in real
training sources (MBPP, the m-IFEval training 60 %, the repo's seeds).

    .venv/bin/python benchmarks/decontamination.py [--rows 100000]
        [--long-rows 2000] [--baseline-rows 20000] [--record]

The rows checked for speed are short (10 to 40 words drawn from MBPP's problem texts) or long
(400 to 600 words), with one row in 1000 a copied HumanEval prompt, so the hit path runs too.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_io import add_output_args, write_result  # noqa: E402

from eval_sets import load_humaneval, texts_for_decontamination  # noqa: E402
from eval_sets.contamination import DEFAULT_MIN_OVERLAP, ContaminationIndex, flagged, units  # noqa: E402
from eval_sets.loaders import heldout_keys  # noqa: E402


def speed_rows(count: int, data: Path, low: int = 10, high: int = 40) -> list[list[str]]:
    """Rows of `low` to `high` MBPP words, one in 1000 a HumanEval prompt."""
    texts = [json.loads(line)["text"] for line in (data / "mbpp" / "mbpp.jsonl").read_text().splitlines()]
    words = " ".join(texts).split()
    prompts = [p.prompt for p in load_humaneval(data_dir=data)]
    rng = random.Random(0)
    return [
        [prompts[i // 1000 % len(prompts)]]
        if i % 1000 == 999
        else [" ".join(rng.choices(words, k=rng.randint(low, high)))]
        for i in range(count)
    ]


class NaiveIndex:
    """The baseline: each row's word 8-grams as a set of tuples, looked up in a dict."""

    def __init__(self, texts: dict[str, list[tuple[str, str]]], n: int = 8) -> None:
        self.n = n
        self.grams: dict[tuple[str, ...], set[str]] = {}
        for items in texts.values():
            for item_id, text in items:
                words = units(text)[0]
                for i in range(len(words) - n + 1):
                    self.grams.setdefault(tuple(words[i : i + n]), set()).add(item_id)

    def query(self, text: str) -> set[str]:
        words = units(text)[0]
        found: set[str] = set()
        for i in range(len(words) - self.n + 1):
            found |= self.grams.get(tuple(words[i : i + self.n]), set())
        return found


def check(index: ContaminationIndex, rows: list[tuple[str, list[str]]]) -> dict:
    """Rows flagged at the default threshold, per set, and up to 5 examples per set."""
    results = index.query_rows([texts for _, texts in rows])
    by_set: dict[str, int] = dict.fromkeys(index.set_names, 0)
    any_shared: dict[str, int] = dict.fromkeys(index.set_names, 0)
    examples: dict[str, list] = {}
    for (row_id, _), matches in zip(rows, results, strict=True):
        for name in {m.set for m in matches}:
            any_shared[name] += 1
        hits = flagged(matches, DEFAULT_MIN_OVERLAP)
        for name in {m.set for m in hits}:
            by_set[name] += 1
            best = next(m for m in hits if m.set == name)
            examples.setdefault(name, [])
            if len(examples[name]) < 5:
                examples[name].append([row_id, best.item, best.overlap])
    flagged_rows = sum(bool(flagged(m, DEFAULT_MIN_OVERLAP)) for m in results)
    return {"rows": len(rows), "flagged": flagged_rows, "by_set": by_set, "any_shared_ngram": any_shared,
            "examples": examples}  # fmt: skip


def real_sources(data: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """The training sources checked: (row id, texts) each."""
    mbpp = [json.loads(line) for line in (data / "mbpp" / "mbpp.jsonl").read_text().splitlines() if line]
    held = heldout_keys()
    ifeval_train = []
    for language in ("en", "es", "fr", "ja"):
        path = data / "ifeval" / f"m-ifeval_{language}_input_data.jsonl"
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row["key"] not in held[language]:
                    ifeval_train.append((f"m-ifeval-{language}-{row['key']}", [row["prompt"]]))
    seeds = []
    for path in sorted((ROOT / "datagen" / "seeds").glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                row = json.loads(line)
                texts = [v for v in row.values() if isinstance(v, str)]
                seeds.append((f"{path.stem}:{row.get('id', number)}", texts))
    return {
        "mbpp_text": [(f"mbpp-{r['task_id']}", [r["text"]]) for r in mbpp],
        "mbpp_text_and_code": [(f"mbpp-{r['task_id']}", [r["text"], r["code"]]) for r in mbpp],
        "m_ifeval_train": ifeval_train,
        "seeds": seeds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="Rows checked for speed.")
    parser.add_argument("--baseline-rows", type=int, default=20_000, help="Rows the baseline checks.")
    parser.add_argument("--long-rows", type=int, default=2_000, help="Rows of 400-600 words checked.")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    add_output_args(parser, "decontamination")
    args = parser.parse_args()

    texts = texts_for_decontamination(data_dir=args.data)
    builds = []
    for _ in range(3):
        started = time.perf_counter()
        index = ContaminationIndex(texts)
        builds.append(time.perf_counter() - started)
    started = time.perf_counter()
    naive = NaiveIndex(texts)
    naive_build = time.perf_counter() - started

    speed = {}
    for label, count, low, high in (("short", args.rows, 10, 40), ("long", args.long_rows, 400, 600)):
        rows = speed_rows(count, args.data, low, high)
        started = time.perf_counter()
        hits = 0
        for start in range(0, len(rows), 4096):
            hits += sum(bool(m) for m in index.query_rows(rows[start : start + 4096]))
        ours_s = time.perf_counter() - started
        baseline = rows[: min(len(rows), args.baseline_rows)]
        started = time.perf_counter()
        naive_hits = sum(bool(naive.query(texts_[0])) for texts_ in baseline)
        naive_s = time.perf_counter() - started
        ours_rate, naive_rate = len(rows) / ours_s, len(baseline) / naive_s
        speed[label] = {
            "words_per_row": [low, high],
            "rows": len(rows),
            "seconds": round(ours_s, 3),
            "rows_per_s": round(ours_rate),
            "rows_with_a_match": hits,
            "baseline_rows": len(baseline),
            "baseline_seconds": round(naive_s, 3),
            "baseline_rows_per_s": round(naive_rate),
            "baseline_rows_with_a_match": naive_hits,
            "speedup_vs_baseline": round(ours_rate / naive_rate, 2),
        }
        print(label, json.dumps(speed[label]))

    stats = index.stats
    result = {
        "index": {
            "build_s_median_of_3": round(statistics.median(builds), 3),
            "naive_build_s": round(naive_build, 3),
            "items": stats.items,
            "ngrams": stats.ngrams,
            "unmatchable": stats.unmatchable,
        },
        "speed": speed,
        "sources": {name: check(index, source) for name, source in real_sources(args.data).items()},
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {write_result(args, result)}")


if __name__ == "__main__":
    main()
