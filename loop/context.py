"""What every loop step runs with: the registry, the model store, the evaluator, the log; and
the error a failed step raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets_registry import Registry
from loop.gates import Summary
from loop.spec import EvaluationSpec, LoopSpecError
from model_store import ModelStore

Evaluate = Callable[[str, EvaluationSpec], Summary]
Log = Callable[[str], None]


class LoopStepError(LoopSpecError):
    """A step failed; the loop state records it and `assay loop resume` retries it."""


@dataclass
class LoopContext:
    """What the steps use: the registry, the model store, the evaluator and where state goes."""

    registry: Registry
    store: ModelStore
    home: Path
    evaluate: Evaluate
    log: Log = print
    use_cache: bool = True


def split_ref(ref: str) -> tuple[str, str]:
    """`NAME@VERSION` as (NAME, VERSION); no version is `latest`."""
    name, _, version = ref.partition("@")
    return name, version or "latest"


def resolve_path(spec_dir: Path, relative: str) -> Path:
    """A path from a spec, relative to the spec's folder unless absolute."""
    path = Path(relative).expanduser()
    return path if path.is_absolute() else spec_dir / path
