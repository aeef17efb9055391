"""One documented config for reward-model training, both stages (Command A report, 3.2.3).

Defaults follow the report where it gives them: soft labels 0.999 for gold pairs and 0.5 for
tied gold pairs; stage 1 for one epoch at peak learning rate 4e-5 with a large effective batch;
stage 2 at peak 3e-6 with a batch of 16 pairs; packed rows filled towards 75 %.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from assay.config import apply_overrides, describe_validation_error, read_yaml_mapping
from assay.errors import AssayError
from trainer.config import LoopConfig


class RMConfigError(AssayError, ValueError):
    """A reward-model config or input that does not validate; the message names file and field."""


class StageConfig(BaseModel):
    """Optimisation of one training stage."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(1, ge=1, description="Passes over the stage's pairs (the report uses one).")
    learning_rate: float = Field(4e-5, gt=0, description="Peak learning rate of the cosine schedule.")
    pairs_per_step: int = Field(1024, ge=1, description="Effective batch in pairs (through accumulation).")
    micro_batch_pairs: int = Field(
        8,
        ge=1,
        description="A forward pass takes whole packed rows until it holds this many pairs; fewer "
        "pairs per forward cut activation memory at about the same speed.",
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps warming up linearly.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine decay floor, as a share of the peak.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")


def _stage2_default() -> StageConfig:
    return StageConfig(learning_rate=3e-6, pairs_per_step=16, micro_batch_pairs=8)


class RMConfig(BaseModel):
    """How to train a Bradley–Terry reward model from registered `rm_pairs` datasets.

    Rows go to stage 1 or 2 by their `stage` column. With an `ensemble`, stage-1 labels are
    replaced by the members' mean sigma(r_chosen - r_rejected), and stage-2 gold pairs whose
    label the ensemble contradicts move to stage 1 with the ensemble's label.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m-instruct", description="Backbone: stored model name or HF folder.")
    datasets: list[str] = Field(min_length=1, description="Registered rm_pairs datasets `name@version`.")
    eval_dataset: str | None = Field(None, description="rm_pairs dataset evaluated before and after.")
    eval_limit: int | None = Field(None, ge=1, description="Evaluate only the first N pairs.")
    eval_before: bool = Field(True, description="Also evaluate the untrained model (one more pass).")
    output: str | None = Field(None, description="Name to register the checkpoint under.")
    max_length: int = Field(512, ge=8, description="Tokens per sample (prompt + one response).")
    truncation: Literal["left", "drop"] = Field(
        "left", description="Too long: cut the prompt from the left, or drop the pair (counted)."
    )
    invalid_rows: Literal["drop", "error"] = Field(
        "drop", description="A pair with an empty side or a bad label: drop it (counted) or fail."
    )
    limit_pairs: int | None = Field(None, ge=1, description="Use only the first N pairs of the datasets.")
    pooling: Literal["auto", "last", "cls"] = Field(
        "auto", description="Decoders score the last token, encoders their classification pooler."
    )
    packing: bool = Field(True, description="Pack several pairs per row (decoders only).")
    row_length: int | None = Field(None, ge=8, description="Packed row capacity; default max_length.")
    fill_target: float = Field(0.75, gt=0, le=1, description="Fill packed rows towards this share.")
    gold_label: float = Field(0.999, ge=0, le=1, description="Label of a gold pair given no label.")
    tie_label: float = Field(0.5, ge=0, le=1, description="Label of a tied gold pair (`tied` column).")
    margin: float = Field(0.0, ge=0, description="Margin in the loss, unless a row has `margin`.")
    ensemble: list[str] = Field(default_factory=list, description="Reward models that relabel pairs.")
    move_contradicted: bool = Field(True, description="Move stage-2 pairs the ensemble contradicts.")
    stage1: StageConfig = Field(default_factory=StageConfig, description="The large, relabelled set.")
    stage2: StageConfig = Field(default_factory=_stage2_default, description="The high-quality set.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the gradient norm; None: off.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    score_batch_pairs: int = Field(16, ge=1, description="Pairs per forward in ensemble scoring and eval.")
    seed: int = Field(0, description="Seeds the head's initialisation and the data order.")
    torch_threads: int | None = Field(None, ge=1, description="Torch threads.")
    log_every: int = Field(10, ge=1, description="Print the loss every N steps.")

    @model_validator(mode="after")
    def _lengths_fit(self) -> RMConfig:
        if self.row_length is not None and self.row_length < self.max_length:
            raise ValueError(
                f"row_length ({self.row_length}) must be at least max_length ({self.max_length})"
            )
        return self

    @property
    def capacity(self) -> int:
        """Tokens a packed row holds."""
        return self.row_length or self.max_length

    def stage_loop(self, stage: StageConfig, gradient_accumulation: int) -> LoopConfig:
        """The loop config of one stage: the stage's schedule and the run's shared settings.

        A loop item is already a micro batch (a group of packed rows holding about
        `stage.micro_batch_pairs` pairs), so `micro_batch_size` is 1; `gradient_accumulation`
        comes from the data: the micro batches a step needs to hold `stage.pairs_per_step` pairs.
        """
        return LoopConfig(
            epochs=stage.epochs, max_steps=stage.max_steps, micro_batch_size=1,
            gradient_accumulation=gradient_accumulation, learning_rate=stage.learning_rate,
            warmup_ratio=stage.warmup_ratio, min_lr_ratio=stage.min_lr_ratio,
            weight_decay=self.weight_decay, max_grad_norm=self.max_grad_norm, seed=self.seed,
            log_every=self.log_every,
        )  # fmt: skip


def load_rm_config(path: Path, overrides: list[str] | None = None) -> RMConfig:
    """Read a YAML reward-model config; `overrides` are `--set KEY=VALUE` assignments, whose
    dotted keys nest (`stage2.learning_rate=1e-5`)."""
    raw = read_yaml_mapping(path, "reward-model config", RMConfigError)
    if raw.get("method") == "rm":
        del raw["method"]
    apply_overrides(raw, overrides or [], RMConfigError)
    try:
        return RMConfig.model_validate(raw)
    except ValidationError as err:
        raise RMConfigError(describe_validation_error(err, path, separator="; ")) from err
