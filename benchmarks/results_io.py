"""Where a benchmark writes its JSON result, so that a run never rewrites a tracked file.

By default a result goes to `benchmarks/out/NAME.json`, which git ignores. `--record` writes
`benchmarks/results/NAME.json` instead: the tracked figures that docs/performance.md cites.
`--out PATH` writes exactly there. A script uses it in two lines:

    add_output_args(parser, "hf_batching")   # adds --out and --record
    ...
    write_result(args, result)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
RECORDED = BENCHMARKS / "results"  # tracked
SCRATCH = BENCHMARKS / "out"  # git-ignored


def add_output_args(parser: argparse.ArgumentParser, name: str) -> None:
    """Add `--out` and `--record` to a benchmark's parser.

    Args:
        parser: The benchmark's argument parser.
        name: The result's file stem, e.g. "hf_batching".
    """
    parser.set_defaults(result_name=name)
    # Exclusive at parse time, so a clash stops the run before it measures anything.
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"write the JSON here (default: {SCRATCH.name}/{name}.json, not tracked by git)",
    )
    where.add_argument(
        "--record",
        action="store_true",
        help=f"write the tracked {RECORDED.parent.name}/{RECORDED.name}/{name}.json instead",
    )


def result_path(name: str, *, record: bool = False, out: Path | None = None) -> Path:
    """Say where a result goes: `out` when given, else the recorded or the scratch file.

    Args:
        name: The result's file stem.
        record: Write the tracked `benchmarks/results/NAME.json`.
        out: An explicit path, which wins over both.

    Returns:
        The path the JSON should be written to.

    Raises:
        ValueError: Both `out` and `record` were given.
    """
    if out is not None and record:
        raise ValueError("--out and --record are exclusive: --record writes benchmarks/results/")
    if out is not None:
        return Path(out)
    return (RECORDED if record else SCRATCH) / f"{name}.json"


def write_result(args: argparse.Namespace, result: Any) -> Path:
    """Write `result` as indented JSON where `args` (from `add_output_args`) says, and say where.

    Args:
        args: Parsed arguments holding `result_name`, `out` and `record`.
        result: Anything `json.dumps` accepts.

    Returns:
        The path written.
    """
    path = result_path(args.result_name, record=args.record, out=args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path
