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


MANAGED_TRAIN_FIELDS = frozenset({"model", "dataset", "output"})


class PreferenceStep(StrictModel):
    """Preference training of an expert after its SFT, starting from the SFT model (the order of
    the Command A report's experts, 3.2-3.3: SFT, then offline preference training)."""

    dataset: str = Field(
        description="Preference pairs, `NAME@VERSION` or `NAME@latest`: registered, or a data step's output."
    )
    train: dict[str, Any] = Field(
        default_factory=lambda: {"method": "dpo"},
        description="TrainConfig fields; `method` is a preference loss (dpo, ipo, slic, copg).",
    )


class ExpertStep(StrictModel):
    """Train one expert from the start model on one registered dataset (then, optionally, on
    preference pairs from that SFT model)."""

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
    seeds: list[int] | None = Field(
        None,
        min_length=2,
        description="Train the SFT once per seed (`<loop>-<name>-seed-S`) and average them uniformly: "
        "a seed merge (Command A report, 3.4). None: one run, with `train.seed`.",
    )
    preference: PreferenceStep | None = Field(
        None, description="Preference training after SFT; the SFT model is kept as `<loop>-<name>-sft`."
    )


class RefinementRetry(StrictModel):
    """How a candidate that did not help is refined before its one retry: a pipeline (e.g.
    multilingual arbitrage over the candidate's prompts) whose output takes its place."""

    pipeline: str = Field(description="Pipeline spec (YAML), relative to the loop spec's folder.")
    set: list[str] = Field(default_factory=list, description="`KEY=VALUE` overrides of the pipeline spec.")
    dataset: str = Field(description="The pipeline's SFT output (NAME) that replaces the candidate.")


class RefinementCandidate(StrictModel):
    """One dataset considered for the SFT mix."""

    name: str = Field(description="Candidate name, unique among the candidates.")
    dataset: str = Field(
        description="SFT data, `NAME@VERSION` or `NAME@latest`: registered, or a data step's output."
    )
    retry: RefinementRetry | None = Field(None, description="Refine and retry once when it does not help.")


class RefinementSpec(StrictModel):
    """Iterative supervised refinement of the SFT data mix (Command R7B Arabic report, 3.3): train
    on the base mix plus each candidate in turn, keep a candidate only if a critical suite improves
    on its dev split, else refine its prompts and retry once. The accepted mix is registered as
    `output`, for the experts to train on (`output@latest`)."""

    output: str = Field(description="Dataset name the accepted mix is registered as.")
    base: list[str] = Field(
        min_length=1, description="SFT datasets of the base mix (NAME@V or a data step's NAME@latest)."
    )
    candidates: list[RefinementCandidate] = Field(min_length=1, description="Datasets considered, in order.")
    critical: list[str] = Field(
        min_length=1, description="Suites whose primary metric decides (on their dev splits)."
    )
    limit: int | None = Field(None, ge=1, description="Dev items per suite (None: all).")
    train: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig fields of every trial (SFT from the start model)."
    )


class EvaluationSpec(StrictModel):
    """What every model of the loop is measured on (the test splits)."""

    suites: list[str] = Field(default_factory=lambda: list(LOOP_SUITES), description="Suites to run.")
    limit: int | None = Field(None, ge=1, description="Items per suite (None: all).")
    max_tokens: int = Field(256, ge=1, description="Longest reply generated per item.")
    backend: str = Field("hf", description="Engine generating the replies: hf or vllm.")
    threads: int | None = Field(
        None,
        ge=1,
        description="Torch threads of the hf engine (default: every CPU here; the loop evaluates "
        "one model at a time, in its own process).",
    )
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


class PolishRound(StrictModel):
    """One polish round: optionally generate its data with the newest model, then train the newest
    model on it. Best-of-N SFT is a round whose pipeline selects by the reward model and whose
    `train.method` is sft; online iterative DPO is a round with a preference pipeline, method dpo
    and `repeat` > 1, each repetition generating with the checkpoint of the one before (Aya
    Expanse's offline-then-online preference training; Command A report, 3.5)."""

    name: str = Field(description="Round name; its models are stored as `<loop>-polish-<name>[-i]`.")
    pipeline: str | None = Field(
        None,
        description="Pipeline spec generating the round's data (relative to the loop spec); none: "
        "train on `dataset` as registered.",
    )
    set: list[str] = Field(default_factory=list, description="`KEY=VALUE` overrides of the pipeline spec.")
    model_key: str | None = Field(
        None,
        description="The pipeline field naming its generation model (e.g. `stages.1.engine.model`), "
        "set to the newest model of the loop each time the round runs; none: the pipeline's own "
        "model (offline data).",
    )
    dataset: str = Field(
        description="What the round trains on: an output of its pipeline (NAME), else a registered dataset "
        "or a data step's output (NAME@VERSION or NAME@latest)."
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig fields (method sft or a preference loss, epochs, ...)."
    )
    repeat: int = Field(
        1,
        ge=1,
        le=3,
        description="Times the round runs, each from the newest model (online rounds: up to 3).",
    )

    @model_validator(mode="after")
    def _online_needs_a_generator(self) -> PolishRound:
        if self.repeat > 1 and (self.pipeline is None or self.model_key is None):
            raise ValueError(f"polish round {self.name!r}: repeat > 1 needs a pipeline and its model_key")
        if self.model_key is not None and self.pipeline is None:
            raise ValueError(f"polish round {self.name!r}: model_key needs a pipeline")
        return self


class PolishSpec(StrictModel):
    """Polish the soup (or the only expert) round by round, then optionally interpolate back."""

    rounds: list[PolishRound] = Field(min_length=1, description="Rounds, in order.")
    interpolation: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="WARP's step toward the polished model: final = base + eta * (polished - base), "
        "base the model polish started from (Ramé et al. 2024, arXiv 2406.16768); none: the polished model.",
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
    refinement: RefinementSpec | None = Field(
        None, description="Choose the SFT mix by iterative supervised refinement, before the experts."
    )
    experts: list[ExpertStep] = Field(min_length=1, description="Experts to train.")
    merge: MergeStep | None = Field(None, description="Soup the experts (needs two or more).")
    polish: PolishSpec | None = Field(None, description="Polish rounds after the merge.")
    gates: GatesSpec = Field(default_factory=GatesSpec, description="Gates between steps.")

    @model_validator(mode="after")
    def _consistent(self) -> LoopSpec:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"name {self.name!r}: lowercase letters, digits, '.', '_', '-'")
        for kind, names in (
            ("data step", [d.name for d in self.data]),
            ("expert", [e.name for e in self.experts]),
            ("polish round", [r.name for r in self.polish.rounds] if self.polish else []),
            ("refinement candidate", [c.name for c in self.refinement.candidates] if self.refinement else []),
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
            _check_train_fields(f"experts.{expert.name}.train", expert.train)
            if expert.seeds is not None:
                if len(set(expert.seeds)) < len(expert.seeds):
                    raise ValueError(f"experts.{expert.name}.seeds repeat")
                if "seed" in expert.train:
                    raise ValueError(f"experts.{expert.name}: give seeds or train.seed, not both")
            if expert.preference is not None:
                where = f"experts.{expert.name}.preference.train"
                _check_train_fields(where, expert.preference.train)
                if expert.preference.train.get("method", "sft") == "sft":
                    raise ValueError(f"{where}.method: a preference loss (dpo, ipo, slic, copg), not sft")
        for round_ in self.polish.rounds if self.polish else []:
            _check_train_fields(f"polish.rounds.{round_.name}.train", round_.train)
        if self.refinement is not None:
            _check_train_fields("refinement.train", self.refinement.train)
            reserved = [c.name for c in self.refinement.candidates if c.name in ("base", "mix")]
            if reserved:
                raise ValueError(f"refinement.candidates: {reserved[0]!r} names a step of its own; rename it")
            unknown = [s for s in self.refinement.critical if s not in self.evaluation.suites]
            if unknown:
                raise ValueError(f"refinement.critical: {unknown[0]!r} is not among evaluation.suites")
        if self.merge is not None:
            if len(self.experts) < 2:
                raise ValueError("merge needs at least two experts")
            if self.merge.weights is not None and len(self.merge.weights) != len(self.experts):
                raise ValueError("merge.weights needs one weight per expert")
        elif self.polish is not None and len(self.experts) > 1:
            raise ValueError("polish starts from the soup: with several experts it needs merge")
        self._check_names()
        return self

    def _check_names(self) -> None:
        """Every name becomes part of store names and step keys: each must be a valid name, and
        no two steps or models may end up with the same key (an expert called `soup` would)."""
        named = [("data", d.name) for d in self.data] + [("experts", e.name) for e in self.experts]
        named += [("polish.rounds", r.name) for r in self.polish.rounds] if self.polish else []
        named += (
            [("refinement.candidates", c.name) for c in self.refinement.candidates] if self.refinement else []
        )
        for where, name in named:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"{where}: {name!r}: lowercase letters, digits, '.', '_', '-'")
        from loop.names import planned_models
        from loop.runner import step_names  # both import this module: imported when called

        for kind, keys in (("steps", step_names(self)), ("models", planned_models(self))):
            repeated = sorted({key for key in keys if keys.count(key) > 1})
            if repeated:
                raise ValueError(
                    f"two {kind} would both be {repeated[0]!r}: rename one of the names it comes from"
                )

    def model_name(self, role: str) -> str:
        """The store name of one of the loop's models (`<loop>-<role>`)."""
        return f"{self.name}-{role}"


def _check_train_fields(where: str, train: dict[str, Any]) -> None:
    managed = sorted(MANAGED_TRAIN_FIELDS & set(train))
    if managed:
        raise ValueError(f"{where} may not set {', '.join(managed)}")


def load_loop_spec(path: Path, overrides: list[str] | None = None) -> tuple[LoopSpec, dict[str, Any]]:
    """Read and validate a loop spec; return it with its raw mapping (frozen in the loop state)."""
    raw = read_yaml_mapping(path, "loop spec", LoopSpecError)
    apply_overrides(raw, overrides or [], LoopSpecError)
    try:
        return LoopSpec.model_validate(raw), raw
    except ValidationError as err:
        raise LoopSpecError(describe_validation_error(err, path, separator="; ")) from err
