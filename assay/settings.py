"""Where assay keeps its state: the model store and the default dataset registry.

`ASSAY_HOME` (default `~/.cache/assay`) holds `models/` and `registry/`; `ASSAY_REGISTRY`
overrides the registry root (a local path or an object-store URI).
"""

import os
from pathlib import Path


def assay_home() -> Path:
    """The root of assay's local state."""
    return Path(os.environ.get("ASSAY_HOME", "~/.cache/assay")).expanduser()


def model_store_dir() -> Path:
    """The local model store."""
    return assay_home() / "models"


def default_registry_root() -> str:
    """The dataset registry used when none is named."""
    return os.environ.get("ASSAY_REGISTRY") or str(assay_home() / "registry")


def eval_data_dir() -> Path:
    """The folder of the public evaluation data (HumanEval, MGSM, m-IFEval, XSTest, LEval).

    `ASSAY_EVAL_DATA` names it; the default is `shared/data` beside the project's checkout.
    """
    named = os.environ.get("ASSAY_EVAL_DATA")
    if named:
        return Path(named).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"
