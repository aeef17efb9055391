"""One documented config for every training method: SFT and preference training.

`LoopConfig` holds what the optimisation loop (`trainer/loop.py`) reads and nothing else;
`TrainConfig`, the YAML-facing config, is those fields plus the model, data, method and workers,
and hands the loop `config.loop`. Defaults follow the Command A report's appendix B where it gives
them for small experts; everything is overridable from YAML, and unknown keys are rejected.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from assay.config import apply_overrides, describe_validation_error, read_yaml_mapping
from assay.errors import AssayError

Method = Literal["sft", "dpo", "ipo", "slic", "copg"]
PREFERENCE_METHODS: tuple[str, ...] = ("dpo", "ipo", "slic", "copg")


class TrainConfigError(AssayError, ValueError):
    """A training config that does not validate; the message names the file and field."""


class LoopConfig(BaseModel):
    """What the training loop reads: steps, batching, schedule, clipping, L2 to init, seed.

    The loop trains on a list of items (packed rows, pairs, groups of packed rows); what an item
    is belongs to the objective, not to this config.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1, description="Passes over the data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    micro_batch_size: int = Field(
        4, ge=1, description="Items per micro batch: rows (SFT) or pairs (preference) per forward pass."
    )
    gradient_accumulation: int = Field(1, ge=1, description="Micro batches per optimizer step.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate (AdamW).")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps warming up linearly.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine decay floor, as a share of peak.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm; None: off.")
    l2_to_init: float = Field(
        0.0, ge=0, description="Coefficient of 0.5 * ||theta - theta_0||^2, keeping the expert near the base."
    )
    seed: int = Field(
        0, description="Seeds the data order (epoch e shuffles with seed + e); the runners also seed torch."
    )
    log_every: int = Field(10, ge=1, description="Print the loss every N steps.")


class TrainConfig(LoopConfig):
    """How to train an expert from a registered dataset: the loop's fields plus these."""

    method: Method = Field("sft", description="sft, or a preference loss: dpo, ipo, slic, copg.")
    model: str = Field(
        "smollm2-135m-instruct", description="Base model: a stored model name or an HF folder."
    )
    dataset: str = Field(description="Registered dataset `name@version` (kind sft or preference).")
    output: str | None = Field(None, description="Name to register the checkpoint under.")
    max_length: int = Field(1024, ge=8, description="Tokens per sequence; longer ones are truncated.")
    packing: bool = Field(True, description="SFT: pack short samples into rows of max_length.")
    beta: float = Field(0.1, gt=0, description="Preference losses: strength of the reference term.")
    length_normalize: bool = Field(False, description="Preference: average log-probs over tokens.")
    sft_weight: float = Field(0.0, ge=0, description="Preference: weight of an added SFT loss on chosen.")
    slic_delta: float = Field(1.0, gt=0, description="SLiC: hinge margin delta.")
    reward_fields: tuple[str, str] | None = Field(
        None,
        description="CoPG: fields of the `scores` struct holding the chosen and rejected rewards; "
        "default rewards 1 and 0.",
    )
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP) when above 1.")
    use_gpu: bool = Field(False, description="Train on GPUs (one per worker).")
    torch_threads: int | None = Field(None, ge=1, description="Torch threads per worker.")

    @model_validator(mode="after")
    def _method_fits(self) -> "TrainConfig":
        if self.reward_fields is not None and self.method != "copg":
            raise ValueError("reward_fields only applies to method copg")
        return self

    @property
    def is_preference(self) -> bool:
        return self.method in PREFERENCE_METHODS

    @property
    def loop(self) -> LoopConfig:
        """The loop's fields alone, as the plain `LoopConfig` that `trainer.loop.train` takes."""
        return LoopConfig.model_validate(self.model_dump(include=set(LoopConfig.model_fields)))


def load_train_config(path: Path, method: str, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config for `method` (the CLI's subcommand); a `method:` key must agree.
    `overrides` are `--set KEY=VALUE` assignments."""
    raw = read_yaml_mapping(path, "training config", TrainConfigError)
    if raw.get("method", method) != method:
        raise TrainConfigError(
            f"{path}: method: the file says {raw['method']!r} but the command is {method!r}"
        )
    apply_overrides(raw, overrides or [], TrainConfigError)
    raw["method"] = method
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        raise TrainConfigError(describe_validation_error(err, path, separator="; ")) from err
