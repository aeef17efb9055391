"""Register hh-rlhf harmless-base pairs as rm_pairs datasets, with the fixed split of issue 6.

    python examples/reward_model/register_hh_rlhf.py [--data ../shared/data] [--stage2-pairs 400]

Writes three datasets to the registry ($ASSAY_REGISTRY or ~/.cache/assay/registry):
  hh-harmless-train         the 1,849 train pairs, gold (label 0.999, stage 2), shuffled order
  hh-harmless-test          the 463 held-out pairs, gold; evaluate on the first 400
  hh-harmless-train-2stage  the same train pairs; the first --stage2-pairs stay gold (stage 2), the
                            rest are stage 1, to be relabelled by an ensemble of reward models
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa

from datasets_registry import Registry
from datasets_registry.kinds import MESSAGES_TYPE
from datasets_registry.lineage import Lineage
from reward_model.data import hh_rlhf_pair, hh_rlhf_split

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = pa.schema(
    [("id", pa.string()), ("prompt", MESSAGES_TYPE), ("chosen", MESSAGES_TYPE), ("rejected", MESSAGES_TYPE),
     ("label", pa.float64()), ("stage", pa.int64()), ("source", pa.string()), ("language", pa.string())]
)  # fmt: skip


def rows(records: list[dict[str, str]], indices: list[int], stage2: int | None = None) -> pa.Table:
    """rm_pairs rows for `indices` (in that order); after the first `stage2`, stage 1."""
    out = []
    for position, index in enumerate(indices):
        pair = hh_rlhf_pair(records[index])
        out.append(
            {
                "id": f"hh-harmless-base-test-{index}",
                **pair,
                "label": 0.999,
                "stage": 2 if stage2 is None or position < stage2 else 1,
                "source": f"anthropics/hh-rlhf:harmless-base/test.jsonl.gz#{index}",
                "language": "en",
            }
        )
    return pa.Table.from_pylist(out, schema=SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--registry", default=None, help="Registry root; default as the CLI.")
    parser.add_argument("--stage2-pairs", type=int, default=400)
    args = parser.parse_args()
    os.environ.setdefault("LANCE_LOG", "error")
    from assay.settings import default_registry_root

    path = args.data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    raw = path.read_bytes()
    records = [json.loads(line) for line in gzip.decompress(raw).decode().splitlines() if line.strip()]
    if len(records) != 2312:
        raise SystemExit(f"{path}: expected 2,312 pairs, found {len(records)}")
    train, test = hh_rlhf_split(records)
    registry = Registry(args.registry or default_registry_root())
    lineage = Lineage(sources=[f"file:{path}#sha256={hashlib.sha256(raw).hexdigest()}"])
    for name, table in (
        ("hh-harmless-train", rows(records, train)),
        ("hh-harmless-test", rows(records, test)),
        ("hh-harmless-train-2stage", rows(records, train, args.stage2_pairs)),
    ):
        version = registry.write(name, table, kind="rm_pairs", lineage=lineage)
        print(f"registered {version.ref}: {table.num_rows} pairs")


if __name__ == "__main__":
    main()
