"""The model store: named HF folders under `$ASSAY_HOME/models`, and model resolution.

A registry like `datasets_registry`, one layer above the core: checkpoints the trainer, the
merger and the reward model register, and the models every engine and stage resolves.
"""

from model_store.store import (
    DEFAULT_MODEL,
    EMBEDDED_MODELS,
    LATEST,
    META_FILE,
    EmbeddedModel,
    ModelLineage,
    ModelStore,
    ModelStoreError,
    ResolvedModel,
    convert_gguf,
    fingerprint,
)

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "LATEST",
    "META_FILE",
    "EmbeddedModel",
    "ModelLineage",
    "ModelStore",
    "ModelStoreError",
    "ResolvedModel",
    "convert_gguf",
    "fingerprint",
]
