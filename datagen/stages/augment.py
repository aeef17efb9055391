"""Prompt augmentation: paraphrase, stricter (injected verifiable requirements), complexify.

Two stages frame a generate stage (recipe `augment_prompts`, datagen/recipes/augment.py):

- `augment_prepare` keeps the original prompt (`original_prompt`) and the mode, and renders the
  mode's template into `augment_messages`, the conversation the model rewrites:
  - **paraphrase**: one template (the same request, other words);
  - **complexify**: one template per Evol-Instruct in-depth operation (Xu et al., "WizardLM:
    Empowering Large Language Models to Follow Complex Instructions", 2023, arXiv:2304.12244,
    section 3.1: add constraints, deepen, concretize, increase reasoning steps), one operation
    drawn per row from a seeded generator;
  - **stricter**: no model is needed. Verifiable requirements (IFEval ids `judges.ifeval`
    checks: word limits, no commas, JSON, a number of bullets, ...) are drawn per row from a
    seeded generator (`augment_constraints.inject`), their wording is appended to the prompt and
    their ids and kwargs to the row's `instruction_id_list` and `kwargs`, so the `ifeval_verify`
    stage of a later pipeline verifies them. Optionally a model rephrases the result so the
    requirements read naturally (a template), and the rephrasing is checked below.
- `augment_check` checks each candidate the model wrote, takes the first that passes as the
  row's new `prompt`, and reports survival per check in the job's lineage
  (`metrics.stages.NAME`):
  - paraphrase: `reformulation_check`'s rules (datagen/stages/reformulate.py: content words
    kept, wording changed, length, no refusal), then no leak of the template's own words and
    every number and quoted phrase of the original kept;
  - complexify: the paper's elimination (section 3.3): no refusal, no copy of the original, no
    leak of the template's words ("#Rewritten Prompt#", the instruction's own phrases), some
    information gain (longer, with new content words), still on the original's topic (its
    content words), its numbers and quoted phrases kept;
  - stricter: the rephrasing keeps the meaning of the deterministic prompt and the wording of
    every injected requirement (its numbers, phrases and markup); when no candidate does, the
    deterministic prompt is used, so every row with a requirement is augmented.

A row no candidate passes is rejected: dropped (`drop_rejected`, the default) or kept with a
null `prompt` and its reason in `augment_drop`. The counts are summed in a Ray actor, so dropped
rows are counted too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from assay.errors import AssayError
from datagen.stages.augment_constraints import (
    KWARGS_TYPE,
    LANGUAGES,
    REQUIREMENTS,
    inject,
    normalise_kwargs,
    row_rng,
)
from datagen.stages.base import (
    ERROR_COLUMN,
    LIGHT_TASK_CPUS,
    BuildContext,
    Row,
    Stage,
    StageSpec,
    process_table,
    run_rows_isolated,
)
from datagen.stages.reformulate import (
    ReformulationCheckStage,
    ReformulationCheckStageSpec,
    clean_rewrite,
    content_words,
    copy_overlap,
    lexical_similarity,
)
from datagen.stages.registry import register_stage
from datagen.templates import PromptTemplate
from datasets_registry.kinds import MESSAGES_TYPE
from judges.refusal import classify_refusal

if TYPE_CHECKING:
    import ray.data

Mode = Literal["paraphrase", "stricter", "complexify"]
OPERATIONS = ("add_constraints", "deepen", "concretize", "increase_reasoning")
TEMPLATES = Path(__file__).resolve().parents[1] / "recipes" / "templates"
DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "paraphrase": {"paraphrase": "augment_paraphrase.j2"},
    "stricter": {"stricter": "augment_stricter.j2"},
    "complexify": {op: f"augment_evol_{op}.j2" for op in OPERATIONS},
}
# What a template may use; the stage fills them, never the row.
TEMPLATE_VARIABLES = frozenset({"prompt", "requirements", "language", "operation"})
# Optional columns read when the source has them.
OPTIONAL_COLUMNS = ("language", "instruction_id_list", "kwargs")

# The checks of each mode in the order they run; a candidate's verdict is the first it fails.
CHECKS: dict[str, tuple[str, ...]] = {
    "paraphrase": ("empty", "refused", "copy", "length", "meaning", "leak", "literals"),
    "complexify": ("empty", "refused", "leak", "copy", "no_gain", "length", "meaning", "literals"),
    "stricter": ("empty", "refused", "leak", "length", "meaning", "requirements"),
}
# Words of the Evol-Instruct prompts a rewrite must not echo (the paper's elimination rule 4).
LEAK_PHRASES = (
    "#rewritten prompt#",
    "#given prompt#",
    "rewritten prompt",
    "given prompt",
    "rewritten request",
)
PASSED = "passed"
ROUTE_MODEL, ROUTE_SKIP = "model", "skip"
_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_QUOTED = re.compile(r"\"([^\"\n]{1,80})\"|“([^”\n]{1,80})”|«\s?([^»\n]{1,80}?)\s?»")


def literals(text: str) -> list[str]:
    """The numbers and double-quoted phrases of `text`: what a rewrite must keep word for word."""
    quoted = [next(g for g in m.groups() if g is not None).strip() for m in _QUOTED.finditer(text)]
    return [*_NUMBER.findall(text), *(q for q in quoted if q)]


def missing_literals(original: str, rewrite: str) -> list[str]:
    """The literals of `original` (`literals`) that `rewrite` lacks, ignoring case."""
    folded = rewrite.casefold()
    return [item for item in literals(original) if item.casefold() not in folded]


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = [w.casefold() for w in _WORD.findall(text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def instruction_ngrams(
    messages: Sequence[dict[str, str]] | None, *own: str, n: int = 5
) -> set[tuple[str, ...]]:
    """Word n-grams of the template's instruction: the rendered conversation's n-grams that are
    not in the row's own texts `own` (the prompt it was asked to rewrite)."""
    rendered = set().union(*(_ngrams(m["content"], n) for m in messages or []))
    return rendered - set().union(*(_ngrams(text, n) for text in own))


def leaks(rewrite: str, instruction: set[tuple[str, ...]], n: int, original: str = "") -> bool:
    """Whether `rewrite` repeats the template's own words: one of its n-grams, or a phrase of
    `LEAK_PHRASES` that the original does not hold itself."""
    folded, own = rewrite.casefold(), original.casefold()
    if any(phrase in folded and phrase not in own for phrase in LEAK_PHRASES):
        return True
    return bool(_ngrams(rewrite, n) & instruction)


def _words(text: str) -> int:
    return len(_WORD.findall(text))


class AugmentPrepareStageSpec(StageSpec):
    """Keep the original prompt and render the rewrite request (or inject requirements: stricter)."""

    type: Literal["augment_prepare"] = "augment_prepare"
    mode: Mode = Field(
        description="paraphrase, stricter (injected verifiable requirements) or complexify (Evol-Instruct)."
    )
    prompt: str = Field("prompt", description="Column holding the prompt to augment.")
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="Template files (relative to the spec) by name, over the built-in ones: `paraphrase`; "
        "`stricter` (the rephrasing request); for complexify one per operation (add_constraints, deepen, "
        "concretize, increase_reasoning). Variables: prompt, requirements, language, operation.",
    )
    operations: list[Literal["add_constraints", "deepen", "concretize", "increase_reasoning"]] = Field(
        default_factory=lambda: list(OPERATIONS),
        min_length=1,
        description="complexify: the in-depth evolutions to draw from, one per row.",
    )
    seed: int = Field(0, description="Seed of the per-row draws (operation, requirements, their kwargs).")
    constraints: list[str] = Field(
        default_factory=lambda: sorted(REQUIREMENTS),
        min_length=1,
        description="stricter: IFEval instruction ids to inject from (see augment_constraints.REQUIREMENTS).",
    )
    count: int = Field(1, ge=1, le=4, description="stricter: requirements injected per prompt.")
    phrase_with_model: bool = Field(
        False,
        description="stricter: also render the rephrasing request for a model (a generate stage follows).",
    )
    language_column: str | None = Field(
        "language",
        description="Column naming the prompt's natural language (null for code problems, whose "
        "`language` is the programming language: `default_language` then).",
    )
    default_language: str = Field("en", description="Language of rows without a language value.")

    @model_validator(mode="after")
    def _known(self) -> AugmentPrepareStageSpec:
        unknown = sorted(set(self.constraints) - set(REQUIREMENTS))
        if unknown:
            raise ValueError(
                f"constraints {unknown} cannot be injected; known: {', '.join(sorted(REQUIREMENTS))}"
            )
        names = set(DEFAULT_TEMPLATES[self.mode])
        if extra := sorted(set(self.templates) - names):
            raise ValueError(
                f"templates {extra} are not used in mode {self.mode}; names: {', '.join(sorted(names))}"
            )
        return self


class _DynamicRowStage(Stage[Any]):
    """A per-row stage that also reads `optional` columns where the rows have them."""

    optional: tuple[str, ...] = OPTIONAL_COLUMNS

    def rows(self, table: pa.Table) -> pa.Table:
        return process_table(
            table,
            self.name,
            [*self.reads, *(c for c in self.optional if c in table.column_names and c not in self.reads)],
            self.writes,
            lambda rows: run_rows_isolated(rows, self.process_row),
        )

    def process_row(self, row: Row) -> Row:
        raise NotImplementedError

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        return ds.map_batches(
            self.rows, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS, udf_modifying_row_count=False
        )


@register_stage
class AugmentPrepareStage(_DynamicRowStage):
    """Writes `original_prompt`, `augment_mode`, `augment_operation`, `augment_reference` (the
    text a rewrite must keep the meaning of), `augment_messages`, `augment_route` (`model` where
    there is a rewrite request, else `skip`) and `augment_drop`; in stricter
    mode also the new `prompt`, `instruction_id_list`, `kwargs`, `injected_instructions` and
    `augment_markers` (what a rephrasing must keep)."""

    spec_class = AugmentPrepareStageSpec

    def __init__(self, spec: AugmentPrepareStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        context = context or BuildContext()
        self.spec: AugmentPrepareStageSpec = spec
        files = {name: str(TEMPLATES / file) for name, file in DEFAULT_TEMPLATES[spec.mode].items()}
        files |= {name: str(context.resolve(file)) for name, file in spec.templates.items()}
        if spec.mode == "complexify":
            files = {op: files[op] for op in spec.operations}
        if spec.mode == "stricter" and not spec.phrase_with_model:
            files = {}
        self.templates: dict[str, PromptTemplate] = {}
        for name, file in files.items():
            try:
                template = PromptTemplate(Path(file))
            except AssayError as err:
                raise AssayError(f"{context.field('templates')}: {err}") from err
            if extra := sorted(template.variables - TEMPLATE_VARIABLES):
                raise AssayError(
                    f"{context.field('templates')}: template {file} uses {extra}; it may use only "
                    f"{', '.join(sorted(TEMPLATE_VARIABLES))}"
                )
            self.templates[name] = template
        self.reads = (spec.prompt, "id")
        if spec.language_column:
            self.optional = (*OPTIONAL_COLUMNS, spec.language_column)
        self.writes = {
            "original_prompt": pa.string(),
            "augment_mode": pa.string(),
            "augment_operation": pa.string(),
            "augment_reference": pa.string(),
            "augment_messages": MESSAGES_TYPE,
            "augment_route": pa.string(),
            "augment_drop": pa.string(),
        }
        if spec.mode == "stricter":
            self.writes |= {
                spec.prompt: pa.string(),
                "instruction_id_list": pa.list_(pa.string()),
                "kwargs": KWARGS_TYPE,
                "injected_instructions": pa.list_(pa.string()),
                "augment_markers": pa.list_(pa.string()),
            }

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        original = row[spec.prompt]
        if not original or not original.strip():
            raise ValueError(f"column {spec.prompt!r} is empty")
        named = row.get(spec.language_column) if spec.language_column else None
        language = (named or spec.default_language).split("-")[0].lower()
        rng = row_rng(spec.seed, str(row["id"]))
        out: Row = dict.fromkeys(self.writes) | {
            "original_prompt": original,
            "augment_mode": spec.mode,
            "augment_reference": original,
        }
        variables: Row = {"prompt": original, "language": language, "requirements": "", "operation": ""}
        name = spec.mode
        if spec.mode == "complexify":
            name = rng.choice(spec.operations)
            out["augment_operation"] = variables["operation"] = name
        if spec.mode == "stricter":
            out |= {spec.prompt: original} | self._stricter(row, original, language, rng, variables)
        if name in self.templates and not out.get("augment_drop"):
            out["augment_messages"] = [{"role": "user", "content": self.templates[name].render(variables)}]
        # The generate stage's teacher routes on this: rows without a rewrite request skip the model.
        out["augment_route"] = ROUTE_MODEL if out.get("augment_messages") else ROUTE_SKIP
        return out

    def _stricter(self, row: Row, original: str, language: str, rng: Any, variables: Row) -> Row:
        existing = list(row.get("instruction_id_list") or [])
        kwargs = [normalise_kwargs(k) for k in (row.get("kwargs") or [None] * len(existing))]
        if len(kwargs) != len(existing):
            raise ValueError(f"{len(existing)} instruction ids but {len(kwargs)} kwargs")
        out: Row = {
            "instruction_id_list": existing,
            "kwargs": kwargs,
            "injected_instructions": [],
            "augment_markers": [],
        }
        if language not in LANGUAGES:
            return out | {"augment_drop": f"no_wording_in_{language}"}  # worded in LANGUAGES only
        picked = inject(rng, language, existing, self.spec.constraints, self.spec.count)
        if not picked.instruction_ids:
            return out | {"augment_drop": "no_compatible_requirement"}
        separator = "\n\n" if "\n" in original.strip() else " "
        prompt = original.rstrip() + separator + " ".join(picked.phrases)
        variables["requirements"] = " ".join(picked.phrases)
        markers = [
            m
            for i, k in zip(picked.instruction_ids, picked.kwargs, strict=True)
            for m in REQUIREMENTS[i].markers(k, language)
        ]
        return out | {
            self.spec.prompt: prompt,
            "augment_reference": prompt,
            "instruction_id_list": existing + picked.instruction_ids,
            "kwargs": kwargs + picked.kwargs,
            "injected_instructions": picked.instruction_ids,
            "augment_markers": markers,
        }


class AugmentCheckStageSpec(StageSpec):
    """Check the model's rewrites and make the first that passes the row's new prompt."""

    type: Literal["augment_check"] = "augment_check"
    mode: Mode = Field(description="The mode `augment_prepare` ran in; it selects the checks.")
    prompt: str = Field("prompt", description="Column for the new prompt (null or dropped when rejected).")
    candidates: str | None = Field(
        "augment_candidates", description="Column of the model's rewrites (null: stricter without a model)."
    )
    drop_rejected: bool = Field(True, description="Drop rejected rows (else keep them with a null prompt).")
    min_similarity: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Least share of the original's content words kept (default: 0.5; stricter 0.6).",
    )
    max_copy_overlap: float = Field(
        0.8, ge=0.0, le=1.0, description="A rewrite this close (word-trigram Jaccard) is a copy."
    )
    min_length_ratio: float | None = Field(
        None,
        gt=0.0,
        description="Shortest rewrite as a multiple of the original's words (default: paraphrase 0.5, "
        "complexify 1.1: an evolution must grow, stricter 0.8).",
    )
    max_length_ratio: float | None = Field(
        None,
        gt=0.0,
        description="Longest rewrite as a multiple of the original's words (default: 3; complexify 4).",
    )
    min_new_words: int = Field(3, ge=0, description="complexify: content words an evolution must add.")
    leak_ngram: int = Field(
        5, ge=2, description="Words in a row shared with the template's instruction that make a leak."
    )
    keep_literals: bool = Field(
        True, description="Paraphrase and complexify must keep the original's numbers and quoted phrases."
    )
    stem: int = Field(5, ge=3, description="Letters a content word is cut to before matching.")

    @model_validator(mode="after")
    def _candidates(self) -> AugmentCheckStageSpec:
        if self.candidates is None and self.mode != "stricter":
            raise ValueError(f"mode {self.mode} needs `candidates`, the column of the model's rewrites")
        return self

    def defaults(self) -> tuple[float, float, float]:
        """min_similarity, min_length_ratio and max_length_ratio, with the mode's defaults."""
        similarity = {"stricter": 0.6}.get(self.mode, 0.5)
        shortest = {"paraphrase": 0.5, "complexify": 1.1, "stricter": 0.8}[self.mode]
        longest = {"complexify": 4.0}.get(self.mode, 3.0)
        return (
            similarity if self.min_similarity is None else self.min_similarity,
            shortest if self.min_length_ratio is None else self.min_length_ratio,
            longest if self.max_length_ratio is None else self.max_length_ratio,
        )


class _Counts:
    """Survival counts summed over every batch (a Ray actor: rows the stage drops are counted)."""

    def __init__(self) -> None:
        self.totals: dict[str, Any] = {}

    def add(self, counts: dict[str, Any]) -> None:
        merge_counts(self.totals, counts)

    def get(self) -> dict[str, Any]:
        return self.totals


def merge_counts(into: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """Add nested integer counts into `into`."""
    for key, value in counts.items():
        if isinstance(value, dict):
            merge_counts(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value
    return into


@register_stage
class AugmentCheckStage(_DynamicRowStage):
    """Writes the new `prompt`, `augmented`, `augment_drop` (why not), `augment_verdicts` (one per
    candidate: `passed` or the check it failed) and `augment_phrased` (stricter: a model's
    rephrasing is used)."""

    spec_class = AugmentCheckStageSpec

    def __init__(self, spec: AugmentCheckStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.spec: AugmentCheckStageSpec = spec
        self.min_similarity, self.min_ratio, self.max_ratio = spec.defaults()
        # Paraphrase reuses the reformulation check itself (its rules, on characters).
        self.reformulation = ReformulationCheckStage(
            ReformulationCheckStageSpec(
                type="reformulation_check",
                min_similarity=self.min_similarity,
                max_copy_overlap=spec.max_copy_overlap,
                min_length_ratio=self.min_ratio,
                max_length_ratio=self.max_ratio,
                stem=spec.stem,
            )
        )
        reads = [
            "original_prompt",
            "augment_reference",
            "augment_messages",
            "augment_drop",
            "augment_operation",
        ]
        reads += [spec.candidates] if spec.candidates else []
        reads += ["injected_instructions", "augment_markers"] if spec.mode == "stricter" else []
        self.reads = tuple(reads)
        self.writes = {
            spec.prompt: pa.string(),
            "augmented": pa.bool_(),
            "augment_drop": pa.string(),
            "augment_verdicts": pa.list_(pa.string()),
            "augment_phrased": pa.bool_(),
        }
        self.counter: Any = None

    def verdict(
        self,
        original: str,
        reference: str,
        rewrite: str,
        instruction: set[tuple[str, ...]],
        markers: Sequence[str] = (),
    ) -> str:
        """`passed`, or the first check of the mode (`CHECKS`) that `rewrite` fails."""
        spec, mode = self.spec, self.spec.mode
        if mode == "paraphrase":
            _, drop = self.reformulation.check(original, rewrite)
            if drop:
                return drop
            if leaks(rewrite, instruction, spec.leak_ngram, original):
                return "leak"
            return "literals" if spec.keep_literals and missing_literals(original, rewrite) else PASSED
        if not rewrite.strip():
            return "empty"
        if classify_refusal(rewrite).behaviour != "compliance":
            return "refused"
        if leaks(rewrite, instruction, spec.leak_ngram, reference):
            return "leak"
        ratio = _words(rewrite) / max(1, _words(reference))
        similarity = lexical_similarity(reference, rewrite, spec.stem)
        if mode == "complexify":
            if copy_overlap(original, rewrite) >= spec.max_copy_overlap:
                return "copy"
            new_words = content_words(rewrite, spec.stem) - content_words(original, spec.stem)
            if ratio < self.min_ratio or len(new_words) < spec.min_new_words:
                return "no_gain"
            if ratio > self.max_ratio:
                return "length"
            if similarity < self.min_similarity:
                return "meaning"
            return "literals" if spec.keep_literals and missing_literals(original, rewrite) else PASSED
        if not self.min_ratio <= ratio <= self.max_ratio:
            return "length"
        if similarity < self.min_similarity:
            return "meaning"
        folded = rewrite.casefold()
        return "requirements" if any(m.casefold() not in folded for m in markers) else PASSED

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        out: Row = dict.fromkeys(self.writes) | {
            "augmented": False,
            "augment_verdicts": [],
            "augment_phrased": False,
        }
        if row["augment_drop"]:
            return out | {spec.prompt: None, "augment_drop": row["augment_drop"]}
        original, reference = row["original_prompt"], row["augment_reference"]
        texts = [clean_rewrite(c["text"]) for c in (row[spec.candidates] or [])] if spec.candidates else []
        instruction = instruction_ngrams(row["augment_messages"], original, reference, n=spec.leak_ngram)
        markers = row.get("augment_markers") or []
        verdicts = [self.verdict(original, reference, text, instruction, markers) for text in texts]
        chosen = next((text for text, v in zip(texts, verdicts, strict=True) if v == PASSED), None)
        out["augment_verdicts"] = verdicts
        if spec.mode == "stricter":  # the deterministic prompt stands when no rephrasing passes
            return out | {
                spec.prompt: chosen or reference,
                "augmented": True,
                "augment_phrased": chosen is not None,
            }
        if chosen is None:
            return out | {spec.prompt: None, "augment_drop": verdicts[0] if verdicts else "no_candidates"}
        return out | {spec.prompt: chosen, "augmented": True}

    def counts(self, table: pa.Table) -> dict[str, Any]:
        """This batch's counts: rows, rows augmented, rejections by reason, candidates surviving
        each check, per operation (complexify) and per injected instruction (stricter)."""
        columns = ["augmented", "augment_drop", "augment_verdicts", "augment_operation", ERROR_COLUMN]
        columns += ["injected_instructions", "augment_phrased"] if self.spec.mode == "stricter" else []
        steps = CHECKS[self.spec.mode]
        counts: dict[str, Any] = {"rows": 0, "rows_augmented": 0, "rejected_by": {}, "candidates": {}}
        for row in table.select(columns).to_pylist():
            if row[ERROR_COLUMN] is not None:
                continue
            counts["rows"] += 1
            counts["rows_augmented"] += bool(row["augmented"])
            if not row["augmented"]:
                merge_counts(counts["rejected_by"], {row["augment_drop"]: 1})
            if row["augment_operation"]:
                merge_counts(
                    counts,
                    {
                        "by_operation": {
                            row["augment_operation"]: {"rows": 1, "augmented": int(bool(row["augmented"]))}
                        }
                    },
                )
            for instruction_id in row.get("injected_instructions") or []:
                merge_counts(counts, {"injected": {instruction_id: 1}})
            if self.spec.mode == "stricter":
                counts["phrased"] = counts.get("phrased", 0) + int(bool(row["augment_phrased"]))
            verdicts = Counter(row["augment_verdicts"] or [])
            alive = sum(verdicts.values())
            survived = {"generated": alive}
            for step in steps:  # candidates still alive after each check
                alive -= verdicts.get(step, 0)
                survived[f"after_{step}"] = alive
            merge_counts(counts["candidates"], survived)
        return counts

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        import ray

        self.counter = counter = ray.remote(num_cpus=0)(_Counts).remote()
        drop, rows, counts = self.spec.drop_rejected, self.rows, self.counts

        def run(table: pa.Table) -> pa.Table:
            out = rows(table)
            # Waited for, so every batch is counted by the time the dataset is materialised.
            ray.get(counter.add.remote(counts(out)))
            if not drop:  # a rejected row stays, its prompt written null by process_row
                return out
            rejected = pc.and_(
                pc.is_null(out[ERROR_COLUMN]), pc.invert(pc.fill_null(out["augmented"], False))
            )
            return out.filter(pc.invert(rejected))

        return ds.map_batches(run, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)

    def metrics(self, result: Any) -> dict[str, Any]:
        """Rows augmented and rejected (by reason), candidates surviving each check, survival."""
        import ray

        if self.counter is None:
            return {}
        totals = ray.get(self.counter.get.remote())
        if not totals.get("rows"):
            return {}
        generated = totals["candidates"].get("generated", 0)
        passed = totals["candidates"].get(f"after_{CHECKS[self.spec.mode][-1]}", 0)
        return totals | {
            "mode": self.spec.mode,
            "rows_dropped": totals["rows"] - totals["rows_augmented"] if self.spec.drop_rejected else 0,
            "candidates_passed_of_generated": round(passed / generated, 4) if generated else 0.0,
        }
