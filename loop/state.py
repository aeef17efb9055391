"""A loop's progress on disk: the frozen spec and each finished step's result.

One JSON file per loop under `$ASSAY_HOME/loops/NAME/`, replaced atomically (write, fsync,
rename) after every step, so a killed loop leaves the state of its last finished step and
`assay loop resume NAME` continues from the first step not marked done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loop.spec import LoopSpecError

STATE_FILE = "state.json"


@dataclass
class StepRecord:
    """One step's outcome: `done` with its result, or `failed` with the error."""

    status: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0
    finished_at: str = ""


@dataclass
class LoopState:
    """The frozen spec (as written, after overrides), its folder, and the steps so far."""

    name: str
    spec: dict[str, Any]
    spec_dir: str
    steps: dict[str, StepRecord] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def done(self, step: str) -> bool:
        """Whether `step` finished in an earlier run."""
        record = self.steps.get(step)
        return record is not None and record.status == "done"

    def result(self, step: str) -> dict[str, Any]:
        """The result of a finished step."""
        return self.steps[step].result


def loops_dir(home: Path) -> Path:
    """Where loop states live."""
    return home / "loops"


def state_path(home: Path, name: str) -> Path:
    """The state file of the loop called `name`."""
    return loops_dir(home) / name / STATE_FILE


def save_state(home: Path, state: LoopState) -> None:
    """Replace the loop's state file atomically."""
    path = state_path(home, state.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": state.name,
        "spec": state.spec,
        "spec_dir": state.spec_dir,
        "created_at": state.created_at,
        "steps": {step: vars(record) for step, record in state.steps.items()},
    }
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".state.")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(payload, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(home: Path, name: str) -> LoopState:
    """The saved state of loop `name`."""
    path = state_path(home, name)
    if not path.is_file():
        known = sorted(p.parent.name for p in loops_dir(home).glob(f"*/{STATE_FILE}"))
        raise LoopSpecError(f"no loop named {name!r}; loops: {', '.join(known) or 'none'}")
    raw = json.loads(path.read_text())
    return LoopState(
        name=raw["name"],
        spec=raw["spec"],
        spec_dir=raw["spec_dir"],
        steps={step: StepRecord(**record) for step, record in raw["steps"].items()},
        created_at=raw["created_at"],
    )


@contextlib.contextmanager
def loop_lock(home: Path, name: str) -> Iterator[None]:
    """Hold loop `name` while its steps run (load the state inside): two processes running one
    loop would each rewrite the whole state file, the last dropping the other's steps.

    Raises:
        LoopSpecError: another process holds it (`assay loop run/resume`, or a step job).
    """
    path = loops_dir(home) / name / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoopSpecError(f"loop {name!r} is running in another process; wait for it") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
