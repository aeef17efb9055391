"""The import contracts in pyproject.toml hold on this tree, and catch a wrong import."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
ROOT_PACKAGES = CONFIG["root_packages"]
CONTRACTS = {contract["id"]: contract["name"] for contract in CONFIG["contracts"]}
LAYERS, CYCLES = CONTRACTS["layers"], CONTRACTS["registry-acyclic"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """Run lint-imports with the pyproject.toml of `cwd` on the packages under `cwd`."""
    # No cache: the copies below would otherwise share nothing anyway, and the real tree's
    # check must not depend on what an earlier run left behind.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_contracts_hold_on_this_tree() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_tree(dest: Path) -> None:
    """The root packages and pyproject.toml, without caches, so lint-imports sees only them."""
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    for package in ROOT_PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


@pytest.mark.parametrize(
    ("module", "line", "contract", "reported"),
    [
        # The registry is a low layer: it must never reach up into the CLI.
        ("datasets_registry/refs.py", "import assay.cli", LAYERS, ["datasets_registry.refs -> assay.cli"]),
        # A lower package importing a higher one: the sandbox below datagen.
        ("sandbox/errors.py", "import datagen", LAYERS, ["sandbox.errors -> datagen"]),
        # A cycle inside the registry: the column helpers importing the stats that use them.
        # import-linter names the edge to cut, which may be either end of the new cycle.
        (
            "datasets_registry/columns.py",
            "import datasets_registry.stats",
            CYCLES,
            [".columns -> .stats", ".stats -> .columns"],
        ),
    ],
)
def test_a_wrong_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str, reported: list[str]
) -> None:
    copy_tree(tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # deliberately wrong\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert any(edge in broken for edge in reported), result.stdout
