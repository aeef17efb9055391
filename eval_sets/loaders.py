"""Read each evaluation set from the public data folder into typed items with stable ids."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.errors import AssayError
from assay.settings import eval_data_dir

SPLITS = Path(__file__).resolve().parent / "splits"
IFEVAL_HELDOUT = SPLITS / "m_ifeval_heldout.json"
IFEVAL_DEV = SPLITS / "m_ifeval_dev.json"
SPLIT_NAMES = ("test", "dev")
DEV_SPLITS = ("ifeval", "humaneval")  # the sets with a dev split, for choices such as merge weights

IFEVAL_LANGUAGES = ("en", "es", "fr", "ja")
MGSM_LANGUAGES = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
LEVAL_FILES = ("quality", "financial_qa", "scientific_qa")

# Each set's files, relative to the data folder (plus the split file where one applies).
EVAL_SETS: dict[str, tuple[str, ...]] = {
    "ifeval": tuple(f"ifeval/m-ifeval_{lang}_input_data.jsonl" for lang in IFEVAL_LANGUAGES),
    "humaneval": ("humaneval/HumanEval.jsonl.gz",),
    "mgsm": tuple(f"mgsm/mgsm_{lang}.tsv" for lang in MGSM_LANGUAGES),
    "xstest": ("xstest/xstest_prompts.csv",),
    "leval": tuple(f"leval/{name}.jsonl" for name in LEVAL_FILES),
}


class EvalDataError(AssayError, FileNotFoundError):
    """An evaluation file is missing or not what its loader expects."""


@dataclass(frozen=True)
class IFEvalItem:
    """One m-IFEval prompt with its verifiable instructions."""

    id: str
    language: str
    key: int
    prompt: str
    instruction_ids: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class HumanEvalItem:
    """One HumanEval problem: complete `prompt`; `test` defines `check(entry_point)`."""

    id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


@dataclass(frozen=True)
class MGSMItem:
    """One MGSM problem in one language; `answer` is the numeric answer as published."""

    id: str
    language: str
    question: str
    answer: str


@dataclass(frozen=True)
class XSTestItem:
    """One XSTest prompt; `label` is "safe" (should be answered) or "unsafe" (should be refused)."""

    id: str
    prompt: str
    type: str
    label: str


def _path(relative: str, data_dir: Path | None) -> Path:
    root = data_dir or eval_data_dir()
    path = root / relative
    if not path.is_file():
        raise EvalDataError(
            f"evaluation file {path} not found: set ASSAY_EVAL_DATA to the folder holding {relative}"
        )
    return path


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as err:
                    raise EvalDataError(f"{path}, line {number}: not JSON: {err.msg}") from None


def _field(path: Path, number: int, row: dict[str, Any], name: str) -> Any:
    if name not in row:
        raise EvalDataError(f"{path}, line {number}: no field {name!r}")
    return row[name]


def heldout_keys(split: str = "test") -> dict[str, set[int]]:
    """The m-IFEval keys of each language in a recorded split: `test` (held out) or `dev`."""
    if split not in SPLIT_NAMES:
        raise EvalDataError(f"no split {split!r}; splits: {', '.join(SPLIT_NAMES)}")
    recorded = json.loads((IFEVAL_HELDOUT if split == "test" else IFEVAL_DEV).read_text())
    return {language: set(keys) for language, keys in recorded.items()}


def load_ifeval(
    languages: Sequence[str] = IFEVAL_LANGUAGES, *, split: str = "test", data_dir: Path | None = None
) -> list[IFEvalItem]:
    """m-IFEval prompts of `languages` in a fixed split, never generated from: `test` (the
    held-out 40 %) or `dev` (a quarter of the rest, for choices such as merge weights)."""
    held = heldout_keys(split)
    items = []
    for language in languages:
        if language not in held:
            raise EvalDataError(f"m-IFEval has no language {language!r}; it has {', '.join(held)}")
        path = _path(f"ifeval/m-ifeval_{language}_input_data.jsonl", data_dir)
        for number, row in _jsonl(path):
            key = _field(path, number, row, "key")
            if key not in held[language]:
                continue
            ids = _field(path, number, row, "instruction_id_list")
            kwargs = _field(path, number, row, "kwargs")
            items.append(
                IFEvalItem(
                    id=f"m-ifeval-{language}-{key}",
                    language=language,
                    key=key,
                    prompt=_field(path, number, row, "prompt"),
                    instruction_ids=tuple(ids),
                    kwargs=tuple(k or {} for k in kwargs),
                )
            )
    return items


def load_humaneval(*, split: str = "test", data_dir: Path | None = None) -> list[HumanEvalItem]:
    """HumanEval problems of a fixed split: `test`, all 164 in the published order, or `dev`, MBPP's
    validation problems posed as HumanEval problems, ids `MBPP/<task id>` (87; for choices such
    as merge weights; eval_sets.humaneval_dev)."""
    if split not in SPLIT_NAMES:
        raise EvalDataError(f"no split {split!r}; splits: {', '.join(SPLIT_NAMES)}")
    if split == "dev":
        from eval_sets.humaneval_dev import load_humaneval_dev  # it builds on this module

        return load_humaneval_dev(data_dir=data_dir)
    path = _path(EVAL_SETS["humaneval"][0], data_dir)
    return [
        HumanEvalItem(
            id=_field(path, number, row, "task_id"),
            prompt=_field(path, number, row, "prompt"),
            canonical_solution=_field(path, number, row, "canonical_solution"),
            test=_field(path, number, row, "test"),
            entry_point=_field(path, number, row, "entry_point"),
        )
        for number, row in _jsonl(path)
    ]


def load_mgsm(languages: Sequence[str] = MGSM_LANGUAGES, *, data_dir: Path | None = None) -> list[MGSMItem]:
    """MGSM's problems in `languages`; ids `mgsm-LANG-N` (N from 0, the same problem in every language)."""
    items = []
    for language in languages:
        if language not in MGSM_LANGUAGES:
            raise EvalDataError(f"MGSM has no language {language!r}; it has {', '.join(MGSM_LANGUAGES)}")
        path = _path(f"mgsm/mgsm_{language}.tsv", data_dir)
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for number, line in enumerate(lines):
            question, tab, answer = line.rpartition("\t")
            if not tab:
                raise EvalDataError(f"{path}, line {number + 1}: no tab between question and answer")
            items.append(MGSMItem(f"mgsm-{language}-{number}", language, question, answer.strip()))
    return items


def load_xstest(*, data_dir: Path | None = None) -> list[XSTestItem]:
    """XSTest's 450 prompts (250 safe, 200 unsafe)."""
    path = _path(EVAL_SETS["xstest"][0], data_dir)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"id", "prompt", "type", "label"} - set(rows[0] if rows else {})
    if missing:
        raise EvalDataError(f"{path}: no column {', '.join(sorted(missing))}")
    return [XSTestItem(f"xstest-{r['id']}", r["prompt"], r["type"], r["label"]) for r in rows]


def load_leval_questions(*, data_dir: Path | None = None) -> list[tuple[str, str]]:
    """(id, question) for every LEval question (its documents are public books, not eval items)."""
    questions = []
    for name in LEVAL_FILES:
        path = _path(f"leval/{name}.jsonl", data_dir)
        for number, row in _jsonl(path):
            for index, question in enumerate(_field(path, number, row, "instructions")):
                questions.append((f"leval-{name}-{number}-{index}", question))
    return questions


def texts_for_decontamination(*, data_dir: Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """Every evaluation set's texts a training row must not contain: set name → [(id, text)].

    HumanEval contributes prompt and canonical solution of its test and dev problems (the dev
    ones are MBPP's validation problems), MGSM every language's questions, m-IFEval its test and
    dev prompts (the rest may be trained on; training on a dev split would bias the merge
    weights chosen on it).
    """
    ifeval = [*load_ifeval(data_dir=data_dir), *load_ifeval(split="dev", data_dir=data_dir)]
    humaneval = [*load_humaneval(data_dir=data_dir), *load_humaneval(split="dev", data_dir=data_dir)]
    return {
        "ifeval": [(item.id, item.prompt) for item in ifeval],
        "humaneval": [(item.id, item.prompt + item.canonical_solution) for item in humaneval],
        "mgsm": [(item.id, item.question) for item in load_mgsm(data_dir=data_dir)],
        "xstest": [(item.id, item.prompt) for item in load_xstest(data_dir=data_dir)],
        "leval": load_leval_questions(data_dir=data_dir),
    }


def identity(name: str, *, split: str = "test", data_dir: Path | None = None) -> str:
    """Which items a result measured: equal only for the same items.

    `test`: `NAME#sha256=...` over the set's files (and, for ifeval, both split files), as every
    stored result before dev splits records it. `dev`, for the sets in `DEV_SPLITS`:
    `NAME:dev#sha256=...`, over ifeval's files and its dev split file, or over humaneval's dev
    split file and converted problems (eval_sets.humaneval_dev.dev_digest).

    Raises:
        EvalDataError: an unknown set or split, a set without a dev split, a missing file.
    """
    if name not in EVAL_SETS:
        raise EvalDataError(f"no evaluation set {name!r}; there are {', '.join(EVAL_SETS)}")
    if split not in SPLIT_NAMES:
        raise EvalDataError(f"no split {split!r}; splits: {', '.join(SPLIT_NAMES)}")
    if split == "dev" and name not in DEV_SPLITS:
        raise EvalDataError(f"evaluation set {name!r} has no dev split; {', '.join(DEV_SPLITS)} have one")
    if split == "dev" and name == "humaneval":
        from eval_sets.humaneval_dev import dev_digest

        return f"{name}:dev#sha256={dev_digest(data_dir=data_dir)[:16]}"
    digest = hashlib.sha256()
    paths = [_path(relative, data_dir) for relative in EVAL_SETS[name]]
    if name == "ifeval":
        paths += [IFEVAL_DEV] if split == "dev" else [IFEVAL_HELDOUT, IFEVAL_DEV]
    for path in paths:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{name}{':dev' if split == 'dev' else ''}#sha256={digest.hexdigest()[:16]}"
