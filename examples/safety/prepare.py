"""Register the safety example's inputs: the persona library and the prompts of both sets.

should_refuse rows: the first --refuse harmful requests of AdvBench (../shared/data/advbench,
MIT), labelled `should_refuse: true`. should_comply rows: the project's own seed of benign
requests on safety topics and with unsafe-looking vocabulary (datagen/seeds/
safety_should_comply.jsonl). The two are interleaved, so `source.limit` keeps both. XSTest is
never read: it is for evaluation only.

    .venv/bin/python examples/safety/prepare.py --refuse 12 --comply 12
"""

import argparse
import csv
import hashlib
import json
from pathlib import Path

import pyarrow as pa

from assay.settings import default_registry_root
from datasets_registry import Registry
from datasets_registry.lineage import Lineage
from datasets_registry.transfer import import_file

ROOT = Path(__file__).resolve().parents[2]
ADVBENCH = ROOT.parent / "shared" / "data" / "advbench" / "harmful_behaviors.csv"
COMPLY = ROOT / "datagen" / "seeds" / "safety_should_comply.jsonl"
PERSONAS = ROOT / "datagen" / "seeds" / "safety_personas.jsonl"


def file_identity(path: Path) -> str:
    return f"file:{path}#sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refuse", type=int, default=12, help="AdvBench requests to take")
    parser.add_argument("--comply", type=int, default=12, help="should-comply seed requests to take")
    args = parser.parse_args()
    registry = Registry(default_registry_root())
    personas = import_file(registry, PERSONAS, "safety-personas", kind="generic")
    with ADVBENCH.open(newline="") as f:
        goals = [row["goal"] for row in csv.DictReader(f)][: args.refuse]
    refuse = [
        {
            "id": f"advbench-{i:03d}",
            "prompt": goal,
            "should_refuse": True,
            "core_area": "harmful",
            "category": "harmful",
            "source": "advbench",
        }  # fmt: skip
        for i, goal in enumerate(goals)
    ]
    comply = [json.loads(line) for line in COMPLY.read_text().splitlines()][: args.comply]
    rows = [row for pair in zip(refuse, comply, strict=False) for row in pair]
    rows += refuse[len(comply) :] + comply[len(refuse) :]
    lineage = Lineage(sources=[file_identity(ADVBENCH), file_identity(COMPLY)])
    prompts = registry.write("safety-prompts", pa.Table.from_pylist(rows), kind="generic", lineage=lineage)
    print(f"{personas.ref}: {personas.num_rows} personas; {prompts.ref}: {len(refuse)} should-refuse, "
          f"{len(comply)} should-comply")  # fmt: skip


if __name__ == "__main__":
    main()
