"""`assay data decontam`: a registered dataset checked against every evaluation set, as a table
and as JSON (rows checked, rows per set, the first overlapping rows and the items they match)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from datasets_registry import Registry
from eval_sets import load_humaneval, load_xstest

ASSAY = Path(sys.executable).parent / "assay"


def assay(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ASSAY_HOME": str(home), "ASSAY_REGISTRY": str(home / "registry")}
    return subprocess.run([str(ASSAY), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.usefixtures("shared_data")
def test_decontam_reports_rows_per_set_and_the_first_overlapping_rows(tmp_path: Path) -> None:
    problem = load_humaneval()[9]
    unsafe = next(item for item in load_xstest() if item.label == "unsafe" and len(item.prompt.split()) >= 8)
    rows = [{"id": f"ok-{i}", "text": f"A note about gardening, number {i}."} for i in range(5)]
    rows += [{"id": "code", "text": problem.prompt}, {"id": "safety", "text": f"Q: {unsafe.prompt}"}]
    Registry(tmp_path / "registry").write("train-mix", pa.Table.from_pylist(rows), kind="generic")

    done = assay("data", "decontam", "train-mix@1", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["dataset"], report["rows"], report["flagged_rows"]) == ("train-mix@1", 7, 2)
    assert report["by_set"] == {"ifeval": 0, "humaneval": 1, "mgsm": 0, "xstest": 1, "leval": 0}
    assert [(e["row"], e["item"]) for e in report["examples"]] == [
        ("code", problem.id),
        ("safety", unsafe.id),
    ]
    assert report["worst_set"] in {"humaneval", "xstest"} and report["n"] == 8

    done = assay("data", "decontam", "train-mix", "--threshold", "0", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "train-mix@1: 2 of 7 rows" in done.stdout
    assert f"code\thumaneval\t{problem.id}\t" in done.stdout  # piped: tab-separated tables

    done = assay("data", "decontam", "no-such-set", home=tmp_path)
    assert done.returncode == 2 and "no-such-set" in done.stderr
