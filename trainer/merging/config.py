"""Merge and weight-search configs, loaded from YAML (assay's own format or mergekit's linear one).

assay's format:

    method: linear            # linear | seed | leave_one_out | interpolate
    models:
      - {model: code-expert, weight: 0.5}
      - {model: math-expert, weight: 0.5}
    output: soup-v1

mergekit's linear format is accepted too (`merge_method: linear`, `models: [{model, parameters:
{weight}}]`, `dtype`, `parameters: {normalize}`) with mergekit's meaning: its `normalize`
defaults to true there, so weights that do not sum to 1 are rescaled, as mergekit would.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, model_validator

from assay.config import describe_validation_error, read_yaml_mapping
from assay.errors import AssayError
from assay.names import NAME_PATTERN

WEIGHT_TOLERANCE = 1e-6  # how far from 1 the weights of a linear merge may sum
OutputDType = Literal["float32", "float16", "bfloat16", "float64"]
Accumulate = Literal["float64", "float32"]


class MergeError(AssayError, ValueError):
    """Bad merge input (config, models, weights): raised before any output is written."""


class ModelWeight(BaseModel):
    """One input model of a merge and its weight."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("", description="Stored model name or HF folder with safetensors weights.")
    weight: float | None = Field(
        None, description="Linear weight; required by `linear`, set by the method for the others."
    )

    @model_validator(mode="after")
    def _check(self) -> ModelWeight:
        if not self.model:
            raise ValueError("`model` is required: a stored model name or an HF folder")
        if self.weight is not None and not math.isfinite(self.weight):
            raise ValueError(f"weight of {self.model!r} is not a finite number")
        return self


class MergeConfig(BaseModel):
    """One merge job: method, input models and weights, output dtype and name."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["linear", "seed", "leave_one_out", "interpolate"] = Field(
        "linear",
        description=(
            "linear: weighted sum with the given weights; seed: uniform weights (seed merging); "
            "leave_one_out: K merges, each without one model; interpolate: (1-alpha)*base + alpha*model."
        ),
    )
    models: list[ModelWeight] = Field(default_factory=list, description="Input models (experts).")
    base: str | None = Field(None, description="`interpolate` only: the base (parent) model.")
    alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="`interpolate` only: weight of the model, 0 = base."
    )
    normalize: bool = Field(False, description="Divide the weights by their sum instead of requiring 1.")
    dtype: OutputDType | None = Field(
        None, description="Output dtype of float tensors; default: the inputs'."
    )
    accumulate: Accumulate = Field(
        "float64",
        description=(
            "dtype of the running sum. float64 keeps the result within rounding of the exact sum even "
            "where the terms cancel; float32 is a little faster."
        ),
    )
    output: str | None = Field(
        None, description="Store name of the merged model (leave_one_out: a prefix); default from a hash."
    )
    max_shard_size: ByteSize = Field(
        ByteSize(5 * 10**9), description="Largest output safetensors file, e.g. `2GB`; larger are sharded."
    )

    @model_validator(mode="after")
    def _check(self) -> MergeConfig:
        weights = [m.weight for m in self.models]
        has_weights = [w is not None for w in weights]
        if self.method != "interpolate" and self.base is not None:
            raise ValueError(f"`base` is only used by method interpolate, not {self.method}")
        if self.method == "linear":
            if not self.models:
                raise ValueError("linear needs at least one model in `models`")
            if not all(has_weights):
                missing = [m.model for m in self.models if m.weight is None]
                raise ValueError(f"linear needs a weight for every model; missing for {missing}")
            check_weights([w for w in weights if w is not None], self.normalize)
        elif self.method in ("seed", "leave_one_out"):
            if len(self.models) < 2:
                raise ValueError(f"{self.method} needs at least two models")
            if self.method == "seed" and any(has_weights):
                raise ValueError("seed merging uses uniform weights: remove `weight` from the models")
            if self.method == "leave_one_out" and any(has_weights) and not all(has_weights):
                raise ValueError("leave_one_out: give a weight for every model or for none (uniform)")
            if self.method == "leave_one_out" and all(has_weights):
                check_weights([w for w in weights if w is not None], self.normalize)
        else:  # interpolate
            if not self.base:
                raise ValueError("interpolate needs `base`: the model to interpolate towards")
            if len(self.models) != 1 or has_weights[0]:
                raise ValueError(
                    "interpolate needs exactly one entry in `models`, without a weight (use alpha)"
                )
        if self.output is not None and not NAME_PATTERN.match(self.output):
            raise ValueError(
                f"output {self.output!r} is not a valid model name (lowercase, digits, '.', '_', '-')"
            )
        return self

    def output_name(self) -> str:
        """The store name of the output: `output`, or the method plus a short hash of the config."""
        if self.output:
            return self.output
        digest = hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode())
        return f"{self.method.replace('_', '-')}-{digest.hexdigest()[:8]}"


def check_weights(weights: list[float], normalize: bool) -> None:
    """Weights of a linear merge must sum to 1 (within 1e-6), or be normalisable when asked."""
    total = math.fsum(weights)
    if normalize:
        if abs(total) < WEIGHT_TOLERANCE:
            raise ValueError(f"weights {weights} sum to {total:g}: they cannot be normalised")
    elif abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(
            f"weights {weights} sum to {total:.9g}, not 1: fix them or set `normalize: true` "
            "to divide them by their sum"
        )


class Expert(BaseModel):
    """One expert of a weight search: its model and the domain it was trained for."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("", description="Stored model name or HF folder.")
    domain: str = Field("", description="The evaluation domain this expert is for (a key of the scores).")
    target: float | None = Field(
        None, description="Score to reach on its domain; default: the expert's own score, evaluated once."
    )

    @model_validator(mode="after")
    def _check(self) -> Expert:
        if not self.model or not self.domain:
            raise ValueError("each expert needs `model` and `domain`")
        return self


class SearchConfig(BaseModel):
    """A merge-weight search: perturb around the best candidate, up-weight lagging domains."""

    model_config = ConfigDict(extra="forbid")

    experts: list[Expert] = Field(default_factory=list, description="Experts to merge (at least two).")
    evaluator: str = Field(
        "",
        description=(
            "`module:function` or `path/to/file.py:function`; called as f(model_path) and returning "
            "{domain: score}, higher is better."
        ),
    )
    initial_weights: list[float] | None = Field(None, description="Starting candidate; default uniform.")
    rounds: int = Field(4, ge=0, description="Search rounds after the initial candidate.")
    candidates_per_round: int = Field(
        4, ge=1, description="Candidates per round: one heuristic up-weighting, the rest perturbations."
    )
    concentration: float = Field(
        100.0, gt=0, description="Dirichlet concentration of perturbations; larger = closer to the centre."
    )
    step: float = Field(
        1.0, ge=0, description="Step size of the multiplicative up-weighting of lagging domains."
    )
    leave_one_out: bool = Field(False, description="Also evaluate the K leave-one-out merges as candidates.")
    seed: int = Field(0, description="Seed of the perturbations: same seed and evaluator, same search.")
    dtype: OutputDType | None = Field(
        None, description="Output dtype of float tensors; default: the inputs'."
    )
    output: str = Field("search-best", description="Store name of the best merge.")
    max_shard_size: ByteSize = Field(ByteSize(5 * 10**9), description="Largest output safetensors file.")

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        if len(self.experts) < 2:
            raise ValueError("a search needs at least two experts")
        if not self.evaluator or ":" not in self.evaluator:
            raise ValueError("`evaluator` must name a function as `module:function` or `file.py:function`")
        if self.initial_weights is not None:
            if len(self.initial_weights) != len(self.experts):
                raise ValueError("`initial_weights` needs one weight per expert")
            if any(w < 0 for w in self.initial_weights):
                raise ValueError("`initial_weights` must be non-negative (a search stays on the simplex)")
            check_weights(self.initial_weights, normalize=False)
        if not NAME_PATTERN.match(self.output):
            raise ValueError(f"output {self.output!r} is not a valid model name")
        return self


MERGEKIT_KEYS = {
    "merge_method",
    "models",
    "dtype",
    "out_dtype",
    "parameters",
    "base_model",
    "tokenizer_source",
    "output",  # not mergekit's (its CLI takes the output folder): the store name of the merge
}


def from_mergekit(raw: dict[str, Any]) -> dict[str, Any]:
    """Translate a mergekit linear-merge config into assay's fields (mergekit semantics kept).

    Raises:
        ValueError: for anything this translation would silently change (other methods, slices,
            per-tensor weights, a tokenizer other than the first model's).
    """
    unknown = sorted(set(raw) - MERGEKIT_KEYS)
    if unknown:
        raise ValueError(f"mergekit keys not supported by assay's merger: {unknown}")
    if raw.get("merge_method") != "linear":
        raise ValueError(
            f"only mergekit's `merge_method: linear` is supported, not {raw.get('merge_method')!r}"
        )
    if raw.get("tokenizer_source") not in (None, "base"):
        raise ValueError("tokenizer_source: assay copies the tokenizer of the first model (or base_model)")
    defaults = dict(raw.get("parameters") or {})
    normalize = defaults.pop("normalize", True)  # mergekit's linear default
    default_weight = defaults.pop("weight", None)
    if defaults:
        raise ValueError(f"mergekit parameters not supported for linear: {sorted(defaults)}")
    models = []
    for entry in raw.get("models") or []:
        if not isinstance(entry, dict) or "model" not in entry:
            raise ValueError("each mergekit model needs `model`")
        params = dict(entry.get("parameters") or {})
        weight = params.pop("weight", default_weight)
        if params or set(entry) - {"model", "parameters"}:
            raise ValueError(f"mergekit model {entry['model']!r}: only `parameters.weight` is supported")
        if weight is None:
            raise ValueError(f"mergekit model {entry['model']!r} has no weight")
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise ValueError(
                f"mergekit model {entry['model']!r}: weight must be one number (per-tensor gradients and "
                "filters are not supported)"
            )
        models.append({"model": str(entry["model"]), "weight": float(weight)})
    base = raw.get("base_model")
    if base is not None and (not models or str(base) != models[0]["model"]):
        # mergekit takes config and tokenizer from base_model; assay takes them from the first model
        raise ValueError(
            "base_model must also be the first entry of `models` (config and tokenizer come from it)"
        )
    if not isinstance(normalize, bool):
        raise ValueError("parameters.normalize must be true or false")
    out_dtype = raw.get("out_dtype") or raw.get("dtype")
    return {
        "method": "linear",
        "models": models,
        "normalize": normalize,
        "dtype": out_dtype,
        "output": raw.get("output"),
    }


def load_merge_config(path: Path, output: str | None = None) -> MergeConfig:
    """Load a merge YAML in assay's format or mergekit's linear format.

    Args:
        output: The store name of the merge, over the config's own `output`.

    Raises:
        MergeError: naming the file and the field for any bad or unsupported setting.
    """
    raw = read_yaml_mapping(path, "merge config", MergeError)
    if output is not None:
        raw["output"] = output
    try:
        if "merge_method" in raw:
            try:
                raw = from_mergekit(raw)
            except ValueError as err:
                raise MergeError(f"{path}: {err}") from err
        return MergeConfig.model_validate(raw)
    except ValidationError as err:
        raise MergeError(describe_validation_error(err, path, separator="; ")) from err


def load_search_config(path: Path) -> SearchConfig:
    """Load a weight-search YAML; a bad field raises MergeError naming the file and field."""
    try:
        return SearchConfig.model_validate(read_yaml_mapping(path, "merge search config", MergeError))
    except ValidationError as err:
        raise MergeError(describe_validation_error(err, path, separator="; ")) from err
