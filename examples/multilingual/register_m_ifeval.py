"""Register the m-IFEval prompts (en, es, fr, ja) for generation, without the held-out split.

    python examples/multilingual/register_m_ifeval.py [--data ../shared/data] [--registry ROOT]

The evaluation splits are fixed and recorded in eval_sets/splits/: per language, the test split
(m_ifeval_heldout.json) is `random.Random(0).sample(sorted(keys), round(0.4 * len(keys)))`, and
the dev split (m_ifeval_dev.json, for choosing merge weights) is
`random.Random(1).sample(sorted(rest), round(0.25 * len(rest)))` of the remaining keys. Neither
is ever generated from. Writes to the registry ($ASSAY_REGISTRY or ~/.cache/assay/registry):

  m-ifeval-prompts   the other 45 %, with `language`, `key`, `prompt`, `instruction_id_list`,
                     `kwargs`; languages interleaved, so `source.limit: 40` takes 10 of each
  m-ifeval-heldout   the held-out 40 %, for evaluation only

`--write-heldout` rewrites the recorded splits from the rule (the file is checked in; the script
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
DEV_FILE = ROOT / "eval_sets" / "splits" / "m_ifeval_dev.json"
LANGUAGES = ("en", "es", "fr", "ja")
HELDOUT_FRACTION = 0.4
DEV_FRACTION = 0.25  # of what the test split leaves


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


def dev_keys(keys: list[int], held: set[int]) -> list[int]:
    """The fixed dev split of one language's keys outside the test split (sorted)."""
    rest = sorted(set(keys) - held)
    return sorted(random.Random(1).sample(rest, round(DEV_FRACTION * len(rest))))


def split(
    data: Path,
) -> tuple[list[dict], list[dict], dict[str, list[int]], dict[str, list[int]]]:
    """(generation rows interleaved by language, held-out rows, held-out keys, dev keys)."""
    train_by_language, heldout, keys, dev = [], [], {}, {}
    for language in LANGUAGES:
        rows = read_language(data, language)
        keys[language] = heldout_keys([row["key"] for row in rows])
        held = set(keys[language])
        dev[language] = dev_keys([row["key"] for row in rows], held)
        excluded = held | set(dev[language])
        train_by_language.append([row for row in rows if row["key"] not in excluded])
        heldout += [row for row in rows if row["key"] in held]
    interleaved = [row for group in zip_longest(*train_by_language) for row in group if row is not None]
    return interleaved, heldout, keys, dev


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

    train, heldout, keys, dev = split(args.data)
    for path, recorded in ((HELDOUT_FILE, keys), (DEV_FILE, dev)):
        if args.write_heldout:
            path.write_text(json.dumps(recorded, indent=None) + "\n")
        elif json.loads(path.read_text()) != recorded:
            raise SystemExit(f"{path} does not match the split of {args.data}: the data changed?")
    files = [args.data / "ifeval" / f"m-ifeval_{language}_input_data.jsonl" for language in LANGUAGES]
    sources = [f"file:{p}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files]
    registry = Registry(args.registry or default_registry_root())
    for name, rows in (("m-ifeval-prompts", train), ("m-ifeval-heldout", heldout)):
        version = registry.write(name, to_table(rows), kind="generic", lineage=Lineage(sources=sources))
        print(f"registered {version.ref}: {len(rows)} prompts")


if __name__ == "__main__":
    main()
