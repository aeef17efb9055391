"""Every Python example in docs/registry.md runs, in order, in one namespace."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "registry.md"


def test_registry_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_local: None) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"{DOC.name} example {number}", "exec"), namespace)  # noqa: S102
