"""The CLI imports only what a command needs: `assay jobs list` loads neither the other command
groups nor any heavy library, and `assay --help` still lists every group."""

import json
import os
import subprocess
import sys
from pathlib import Path

from assay.cli.main import GROUPS

ASSAY = str(Path(sys.executable).parent / "assay")
HEAVY = ("ray", "lance", "pyarrow", "torch", "transformers", "vllm", "polars", "pandas", "datasets_registry")

PROBE = """
import json, sys
sys.argv = ["assay", "jobs", "list"]
from assay.cli.main import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(sys.modules)))
"""


def test_jobs_list_imports_no_other_group_and_no_heavy_library(tmp_path: Path) -> None:
    env = {**os.environ, "ASSAY_REGISTRY": str(tmp_path / "registry")}
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    modules = set(json.loads(run.stderr.strip().splitlines()[-1]))
    assert "assay.cli.jobs" in modules and "jobs: none yet" in run.stdout
    others = {module for module in GROUPS.values() if module != "assay.cli.jobs"}
    assert sorted(modules & others) == []
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []


def test_help_lists_every_group_and_a_typo_suggests_one(tmp_path: Path) -> None:
    env = {**os.environ, "ASSAY_REGISTRY": str(tmp_path / "registry"), "COLUMNS": "200"}
    shown = subprocess.run([ASSAY, "--help"], env=env, capture_output=True, text=True, check=True).stdout
    listed = {line.strip("│ ").split(" ")[0] for line in shown.splitlines() if line.startswith("│ ")}
    assert set(GROUPS) | {"run", "ui"} <= listed
    typo = subprocess.run([ASSAY, "jbos", "list"], env=env, capture_output=True, text=True)
    assert typo.returncode == 2 and "Did you mean 'jobs'?" in typo.stderr
