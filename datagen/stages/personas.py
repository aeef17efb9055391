"""Sample a persona and a safety mode per prompt (Command A report, 3.3.7).

A persona library is a JSONL file or a registered dataset (`dataset:NAME[@VERSION]`) of rows
with an `id` and a `template`: a jinja2 text rendered with the row's own fields (style,
identity, beliefs, ...), so a library describes many personas with few templates. Each prompt
gets one persona, drawn with a seeded generator keyed by the prompt's id, so a re-run draws the
same persona for the same prompt, whatever the batch it lands in.

The safety mode (`contextual` or `strict`) is drawn the same way, with `strict_fraction`; it
becomes the system preamble of the prompt and decides which behaviour is preferred:

- `contextual`: refuse only requests that are harmful (`should_refuse`);
- `strict`: refuse those, and every request on a core safety area or profanity (a row whose
  `core_area` column is set), even a benign one.

XSTest is an evaluation set: a row whose `source` names it fails here, so no data is ever
generated from it.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Literal

import jinja2
import pyarrow as pa
from pydantic import Field

from assay.errors import AssayError
from datagen.stages.base import BuildContext, Row, RowStage, StageSpec
from datagen.stages.registry import register_stage

Mode = Literal["contextual", "strict"]

CONTEXTUAL_PREAMBLE = (
    "You are a helpful assistant. Answer questions on sensitive subjects (safety, health, law, "
    "history, security) factually and in context. Decline only requests that would help someone "
    "cause real harm, and then say briefly what you will not do."
)
STRICT_PREAMBLE = (
    "You are an assistant for a general audience, including children. Do not engage with violence, "
    "weapons, hate, sexual content, self-harm, crime or drugs, even when asked for information, "
    "and never use profanity. Decline such requests briefly."
)
EVALUATION_ONLY_SOURCES = ("xstest",)


def load_personas(ref: str, context: BuildContext, field: str) -> tuple[list[Row], str]:
    """The persona rows of a JSONL file or a registered dataset, and the library's identity.

    Raises:
        AssayError: the library is missing, empty, or a row lacks `id` or `template`.
    """
    if ref.startswith("dataset:"):
        from assay.settings import default_registry_root
        from datasets_registry import Registry, RegistryError

        try:
            version = Registry(default_registry_root()).open(ref.removeprefix("dataset:"))
        except RegistryError as err:
            raise AssayError(f"{context.field(field)}: {err}") from err
        rows, identity = version.to_arrow().to_pylist(), version.ref
    else:
        path = context.resolve(ref)
        if not path.is_file():
            raise AssayError(f"{context.field(field)}: persona library not found: {path}")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        identity = f"file:{path}#sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"
    if not rows:
        raise AssayError(f"{context.field(field)}: the persona library {ref} is empty")
    for number, row in enumerate(rows):
        if not row.get("id") or not row.get("template"):
            raise AssayError(f"{context.field(field)}: persona {number} of {ref} lacks `id` or `template`")
    return rows, identity


def render_persona(persona: Row) -> str:
    """A persona's description: its `template` rendered with its own fields.

    Raises:
        ValueError: the template uses a field the persona lacks.
    """
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    try:
        return env.from_string(persona["template"]).render(persona).strip()
    except jinja2.UndefinedError as err:
        raise ValueError(f"persona {persona['id']!r}: {err.message}") from err


def row_random(seed: int, key: str, purpose: str) -> random.Random:
    """A generator for one row and one purpose, independent of batching and row order."""
    digest = hashlib.sha256(f"{seed}:{purpose}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def preferred_behaviour(should_refuse: bool, core_area: str | None, mode: str) -> str:
    """`refuse` or `comply`: what a row's preferred completion does in a mode."""
    if should_refuse or (mode == "strict" and core_area):
        return "refuse"
    return "comply"


class PersonaStageSpec(StageSpec):
    """Draw a persona and a safety mode per prompt; the mode decides the preferred behaviour."""

    type: Literal["persona_sample"] = "persona_sample"
    personas: str = Field(
        description="Persona library: a JSONL file (relative to the spec) or `dataset:NAME[@VERSION]`."
    )
    seed: int = Field(0, description="Seed of the draws (persona and mode), combined with each row's id.")
    strict_fraction: float = Field(0.3, ge=0.0, le=1.0, description="Share of rows in `strict` mode.")
    contextual_preamble: str = Field(CONTEXTUAL_PREAMBLE, description="System preamble of `contextual` mode.")
    strict_preamble: str = Field(STRICT_PREAMBLE, description="System preamble of `strict` mode.")
    should_refuse: str = Field("should_refuse", description="Column: the request is harmful (bool).")
    core_area: str = Field(
        "core_area",
        description="Column: the core safety area a request touches (null: none); strict refuses it.",
    )
    source: str | None = Field(
        "source",
        description="Column naming each row's origin; rows from an evaluation-only set (XSTest) fail.",
    )


@register_stage
class PersonaStage(RowStage[PersonaStageSpec]):
    """Writes `persona_id`, `persona` (rendered), `mode`, `preamble` and `prefer` (refuse/comply)."""

    spec_class = PersonaStageSpec

    def __init__(self, spec: PersonaStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.personas, self.library = load_personas(spec.personas, context or BuildContext(), "personas")
        for persona in self.personas:  # a broken template fails the job now, not row by row
            try:
                render_persona(persona)
            except ValueError as err:
                raise AssayError(f"{(context or BuildContext()).field('personas')}: {err}") from err
        self.reads = ("id", spec.should_refuse, spec.core_area, *([spec.source] if spec.source else []))
        self.writes = {
            "persona_id": pa.string(),
            "persona": pa.string(),
            "mode": pa.string(),
            "preamble": pa.string(),
            "prefer": pa.string(),
        }

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        source = str(row.get(spec.source) or "").lower() if spec.source else ""
        if any(name in source for name in EVALUATION_ONLY_SOURCES):
            raise ValueError(f"row comes from {source!r}, an evaluation-only set: never generate from it")
        should_refuse = row[spec.should_refuse]
        if not isinstance(should_refuse, bool):
            raise ValueError(f"column {spec.should_refuse!r} must be true or false, not {should_refuse!r}")
        key = str(row["id"])
        persona = row_random(spec.seed, key, "persona").choice(self.personas)
        mode: Mode = (
            "strict" if row_random(spec.seed, key, "mode").random() < spec.strict_fraction else "contextual"
        )
        return {
            "persona_id": str(persona["id"]),
            "persona": render_persona(persona),
            "mode": mode,
            "preamble": spec.strict_preamble if mode == "strict" else spec.contextual_preamble,
            "prefer": preferred_behaviour(should_refuse, row[spec.core_area], mode),
        }

    def metrics(self, result: Any) -> dict[str, Any]:
        """The persona library the rows were drawn from (kept in the job's lineage)."""
        return {"persona_library": self.library, "personas": len(self.personas)}
