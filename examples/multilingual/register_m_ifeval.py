"""Register the m-IFEval prompts (en, es, fr, ja) for generation, without the held-out split.

    python examples/multilingual/register_m_ifeval.py [--data ../shared/data] [--registry ROOT]

The evaluation split is fixed and recorded in eval_sets/splits/m_ifeval_heldout.json: per language,
`random.Random(0).sample(sorted(keys), round(0.4 * len(keys)))`. Those prompts are never
generated from. Writes to the registry ($ASSAY_REGISTRY or ~/.cache/assay/registry):

  m-ifeval-prompts   the other 60 %, with `language`, `key`, `prompt`, `instruction_id_list`,
                     `kwargs`; languages interleaved, so `source.limit: 40` takes 10 of each
  m-ifeval-heldout   the held-out 40 %, for evaluation only

`--write-heldout` rewrites the recorded split from the rule (the file is checked in; the script
otherwise refuses to run if the data no longer matches it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
from itertools import zip_longest
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[2]
HELDOUT_FILE = ROOT / "eval_sets" / "splits" / "m_ifeval_heldout.json"
LANGUAGES = ("en", "es", "fr", "ja")
HELDOUT_FRACTION = 0.4


def read_language(data: Path, language: str) -> list[dict]:
    """The rows of one m-IFEval file, each with its `language`."""
    path = data / "ifeval" / f"m-ifeval_{language}_input_data.jsonl"
    return [
        json.loads(line) | {"language": language} for line in path.read_text().splitlines() if line.strip()
    ]


def heldout_keys(keys: list[int]) -> list[int]:
    """The fixed evaluation split of one language's keys (sorted)."""
    ordered = sorted(keys)
    return sorted(random.Random(0).sample(ordered, round(HELDOUT_FRACTION * len(ordered))))


def split(data: Path) -> tuple[list[dict], list[dict], dict[str, list[int]]]:
    """(generation rows interleaved by language, held-out rows, held-out keys by language)."""
    train_by_language, heldout, keys = [], [], {}
    for language in LANGUAGES:
        rows = read_language(data, language)
        keys[language] = heldout_keys([row["key"] for row in rows])
        held = set(keys[language])
        train_by_language.append([row for row in rows if row["key"] not in held])
        heldout += [row for row in rows if row["key"] in held]
    interleaved = [row for group in zip_longest(*train_by_language) for row in group if row is not None]
    return interleaved, heldout, keys


def to_table(rows: list[dict]) -> pa.Table:
    """Rows with a stable `id` (language and key) and the m-IFEval columns."""
    return pa.Table.from_pylist(
        [
            {"id": f"m-ifeval-{r['language']}-{r['key']}", "key": r["key"], "language": r["language"],
             "prompt": r["prompt"], "instruction_id_list": r["instruction_id_list"],
             "kwargs": r["kwargs"]}
            for r in rows
        ]
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--registry", default=None, help="Registry root; default as the CLI.")
    parser.add_argument("--write-heldout", action="store_true", help="Rewrite the recorded split.")
    args = parser.parse_args()
    os.environ.setdefault("LANCE_LOG", "error")
    from assay.settings import default_registry_root
    from datasets_registry import Registry
    from datasets_registry.lineage import Lineage

    train, heldout, keys = split(args.data)
    if args.write_heldout:
        HELDOUT_FILE.write_text(json.dumps(keys, indent=None) + "\n")
    elif json.loads(HELDOUT_FILE.read_text()) != keys:
        raise SystemExit(f"{HELDOUT_FILE} does not match the split of {args.data}: the data changed?")
    files = [args.data / "ifeval" / f"m-ifeval_{language}_input_data.jsonl" for language in LANGUAGES]
    sources = [f"file:{p}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files]
    registry = Registry(args.registry or default_registry_root())
    for name, rows in (("m-ifeval-prompts", train), ("m-ifeval-heldout", heldout)):
        version = registry.write(name, to_table(rows), kind="generic", lineage=Lineage(sources=sources))
        print(f"registered {version.ref}: {len(rows)} prompts")


if __name__ == "__main__":
    main()
