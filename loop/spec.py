"""The loop spec: data → experts → merge → evaluation → gates, declared in one YAML file.

Everything a step needs is checked before the first step runs (`check_loop`): the start model,
every dataset an expert trains on (registered, or an output of one of the loop's own data
steps), every pipeline spec, every training field, every suite and gate metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from assay.config import StrictModel, apply_overrides, describe_validation_error, read_yaml_mapping
from assay.errors import AssayError
from assay.names import NAME_PATTERN

LOOP_SUITES = ("ifeval", "humaneval", "mgsm", "xstest")


class LoopSpecError(AssayError, ValueError):
    """A loop spec that cannot run; the message names the file and field."""


class ArbiterCheck(StrictModel):
    """Check a reward model before a data step lets it select: it is trusted only when its
    accuracy on held-out pairs beats the better of "longer wins" and "shorter wins" by more
    than one standard error (`reward_model.eval.trust_report`); otherwise the step runs with
    `fallback`, overrides that select with the verifiers and judges instead."""

    model: str = Field(description="The reward model the pipeline scores with (stored name or folder).")
    heldout: str = Field(description="Preference pairs of the target domain it was not trained on (NAME@V).")
    limit: int | None = Field(400, ge=1, description="Pairs to evaluate (the first N); None: all.")
    fallback: list[str] = Field(
        min_length=1,
        description="`KEY=VALUE` overrides applied when the model is not trusted, e.g. "
        "`recipe.params.rank_by=verifiers`.",
    )


class DataStep(StrictModel):
    """Run one pipeline spec (a recipe) and register its outputs."""

    name: str = Field(description="Step name, unique in the loop.")
    pipeline: str = Field(description="Pipeline spec (YAML), relative to the loop spec's folder.")
    set: list[str] = Field(default_factory=list, description="`KEY=VALUE` overrides of the pipeline spec.")
    arbiter: ArbiterCheck | None = Field(
        None, description="Check the pipeline's reward model first; select without it if untrusted."
    )


class ExpertStep(StrictModel):
    """Train one expert from the start model on one registered dataset."""

    name: str = Field(description="Expert name; the model is stored as `<loop>-<name>`.")
    domain: str = Field(description="The suite this expert is for; it must improve there (a gate).")
    dataset: str = Field(
        description="`NAME@VERSION` or `NAME@latest`: registered already, or an output of a data step."
    )
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields (method, epochs, learning_rate, ...); model, dataset and "
        "output are set by the loop.",
    )


class EvaluationSpec(StrictModel):
    """What every model of the loop is measured on (the test splits)."""

    suites: list[str] = Field(default_factory=lambda: list(LOOP_SUITES), description="Suites to run.")
    limit: int | None = Field(None, ge=1, description="Items per suite (None: all).")
    max_tokens: int = Field(256, ge=1, description="Longest reply generated per item.")
    backend: str = Field("hf", description="Engine generating the replies: hf or vllm.")
    split: Literal["test", "dev"] = Field(
        "test", description="The split measured: test for the report; the weight search reads dev."
    )


class WeightSearchSpec(StrictModel):
    """Search the soup's weights on the dev splits of the experts' domains (never the test splits).

    The search of `assay merge search` (Command A report, 3.4.3.1): up-weight experts of lagging
    domains, perturb around the best; each candidate scored by its domains' primary metrics.
    """

    rounds: int = Field(2, ge=0, description="Search rounds after the initial candidate.")
    candidates_per_round: int = Field(2, ge=1, description="Candidates evaluated per round.")
    limit: int | None = Field(None, ge=1, description="Dev items per domain (None: all).")
    seed: int = Field(0, description="Seed of the perturbations.")


class MergeStep(StrictModel):
    """A linear soup of the experts (Command A report, 3.4)."""

    weights: list[float] | None = Field(
        None, description="One weight per expert (the search's start with `search`); default uniform."
    )
    search: WeightSearchSpec | None = Field(
        None, description="Search the weights on dev splits instead of taking them as given."
    )
    leave_one_out: bool = Field(
        False, description="Also evaluate each leave-one-out soup (each expert's contribution)."
    )


class GatesSpec(StrictModel):
    """Checks between steps; reported always, enforced (the loop stops) when `enforce`."""

    enforce: bool = Field(False, description="Stop the loop at the first failed gate.")
    soup_keeps: float = Field(
        0.95, ge=0, le=1, description="Share of each expert's own-domain gain the soup must keep."
    )
    max_contamination: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Largest share of a training dataset's rows that may overlap an evaluation set.",
    )


class LoopSpec(StrictModel):
    """A whole post-training loop on one start model."""

    name: str = Field(description="Loop name: prefixes every model it registers.")
    start: str = Field(description="The start model (stored name or HF folder).")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec, description="The suite.")
    data: list[DataStep] = Field(default_factory=list, description="Pipelines producing the data.")
    experts: list[ExpertStep] = Field(min_length=1, description="Experts to train.")
    merge: MergeStep | None = Field(None, description="Soup the experts (needs two or more).")
    gates: GatesSpec = Field(default_factory=GatesSpec, description="Gates between steps.")

    @model_validator(mode="after")
    def _consistent(self) -> LoopSpec:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"name {self.name!r}: lowercase letters, digits, '.', '_', '-'")
        for kind, names in (
            ("data step", [d.name for d in self.data]),
            ("expert", [e.name for e in self.experts]),
        ):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{kind} names repeat: {', '.join(repeated)}")
        unknown = [s for s in self.evaluation.suites if s not in LOOP_SUITES]
        if unknown:
            raise ValueError(
                f"evaluation.suites: unknown suite {unknown[0]!r}; known: {', '.join(LOOP_SUITES)}"
            )
        for expert in self.experts:
            if expert.domain not in self.evaluation.suites:
                raise ValueError(
                    f"experts.{expert.name}.domain: {expert.domain!r} is not among evaluation.suites"
                )
            managed = sorted({"model", "dataset", "output"} & set(expert.train))
            if managed:
                raise ValueError(f"experts.{expert.name}.train may not set {', '.join(managed)}")
        if self.merge is not None:
            if len(self.experts) < 2:
                raise ValueError("merge needs at least two experts")
            if self.merge.weights is not None and len(self.merge.weights) != len(self.experts):
                raise ValueError("merge.weights needs one weight per expert")
        return self

    def model_name(self, role: str) -> str:
        """The store name of one of the loop's models (`<loop>-<role>`)."""
        return f"{self.name}-{role}"


def load_loop_spec(path: Path, overrides: list[str] | None = None) -> tuple[LoopSpec, dict[str, Any]]:
    """Read and validate a loop spec; return it with its raw mapping (frozen in the loop state)."""
    raw = read_yaml_mapping(path, "loop spec", LoopSpecError)
    apply_overrides(raw, overrides or [], LoopSpecError)
    try:
        return LoopSpec.model_validate(raw), raw
    except ValidationError as err:
        raise LoopSpecError(describe_validation_error(err, path, separator="; ")) from err
