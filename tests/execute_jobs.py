"""Helpers for tests of jobs that execute programs or fill a cache: a one-stage `execute`
pipeline over program rows, rows compared without their measured wall time, and how many rows
a Lance table (a cache) holds so far."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lance
import yaml


def write_execute_pipeline(
    folder: Path,
    rows: list[dict[str, Any]],
    *,
    name: str,
    output: str,
    sandbox: dict[str, Any],
    limit: int | None = None,
    ray: dict[str, Any] | None = None,
) -> Path:
    """`rows` (id, language, solution, tests) as a JSONL source, and a pipeline that executes
    each row's `solution` (batches of 4) and registers every row as `output` (generic)."""
    (folder / "programs.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    spec: dict[str, Any] = {
        "name": name,
        "source": {"path": "programs.jsonl"} | ({"limit": limit} if limit else {}),
        "stages": [
            {
                "type": "execute",
                "name": "execute",
                "program": "solution",
                "extract": False,
                "batch_size": 4,
                "sandbox": sandbox,
            },
        ],  # fmt: skip
        "outputs": [{"dataset": output, "kind": "generic"}],
    }
    if ray is not None:
        spec["ray"] = ray
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def without_wall_time(row: dict[str, Any]) -> dict[str, Any]:
    """An executed row without its program's wall time (each run measures its own)."""
    return row | {"verdict_details": row["verdict_details"] | {"wall_s": None}}


def table_rows(uri: str) -> int:
    """Rows the Lance table at `uri` holds, 0 before it exists."""
    try:
        return lance.dataset(uri).count_rows()
    except (FileNotFoundError, ValueError):
        return 0
