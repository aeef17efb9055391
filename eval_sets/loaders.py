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
MGSM_DEV = SPLITS / "mgsm_dev.json"  # problem indices held out of the test split (eval_sets.dev_splits)
XSTEST_DEV = SPLITS / "xstest_dev.json"  # XSTest ids held out of the test split (eval_sets.dev_splits)
SPLIT_NAMES = ("test", "dev")
# The sets with a dev split, for choices such as merge weights (every suite's set).
DEV_SPLITS = ("ifeval", "humaneval", "mgsm", "xstest")

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


def _check_split(split: str) -> None:
    if split not in SPLIT_NAMES:
        raise EvalDataError(f"no split {split!r}; splits: {', '.join(SPLIT_NAMES)}")


def _recorded_dev(path: Path, field: str) -> set[int]:
    """The dev keys a split file records (its `field`)."""
    return set(json.loads(path.read_text())[field])


def heldout_keys(split: str = "test") -> dict[str, set[int]]:
    """The m-IFEval keys of each language in a recorded split: `test` (held out) or `dev`."""
    _check_split(split)
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
    _check_split(split)
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


def load_mgsm(
    languages: Sequence[str] = MGSM_LANGUAGES, *, split: str = "test", data_dir: Path | None = None
) -> list[MGSMItem]:
    """MGSM's problems in `languages` of a fixed split, in file order: `test` (200 per language) or
    `dev` (the other 50 problem indices, the same in every language, for choices such as merge
    weights; `splits/mgsm_dev.json`, eval_sets.dev_splits). Ids `mgsm-LANG-N`: N is the line in
    the published files (from 0), the same problem in every language."""
    _check_split(split)
    dev = _recorded_dev(MGSM_DEV, "dev_indices")
    return [
        item
        for item in _read_mgsm(languages, data_dir)
        if (int(item.id.rpartition("-")[2]) in dev) == (split == "dev")
    ]


def _read_mgsm(languages: Sequence[str], data_dir: Path | None) -> list[MGSMItem]:
    """Every MGSM problem in `languages`, both splits."""
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


def load_xstest(*, split: str = "test", data_dir: Path | None = None) -> list[XSTestItem]:
    """XSTest's prompts of a fixed split, in file order: `test` (360: 200 safe, 160 unsafe) or `dev`
    (5 of each type's 25, 90: 50 safe, 40 unsafe, for choices such as merge weights;
    `splits/xstest_dev.json`, eval_sets.dev_splits). Ids `xstest-N`, N XSTest's own id."""
    _check_split(split)
    dev = _recorded_dev(XSTEST_DEV, "dev_ids")
    return [
        item
        for item in _read_xstest(data_dir)
        if (int(item.id.removeprefix("xstest-")) in dev) == (split == "dev")
    ]


def _read_xstest(data_dir: Path | None) -> list[XSTestItem]:
    """XSTest's 450 prompts (250 safe, 200 unsafe), both splits."""
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

    Every set contributes its test and its dev items (training on a dev split would bias the
    choices made on it, such as merge weights): HumanEval prompt and canonical solution (the dev
    problems are MBPP's validation problems), MGSM every language's questions, XSTest its
    prompts, m-IFEval its test and dev prompts (the rest may be trained on).
    """

    def both(load: Any) -> list[Any]:
        return [*load(split="test", data_dir=data_dir), *load(split="dev", data_dir=data_dir)]

    return {
        "ifeval": [(item.id, item.prompt) for item in both(load_ifeval)],
        "humaneval": [(item.id, item.prompt + item.canonical_solution) for item in both(load_humaneval)],
        "mgsm": [(item.id, item.question) for item in both(load_mgsm)],
        "xstest": [(item.id, item.prompt) for item in both(load_xstest)],
        "leval": load_leval_questions(data_dir=data_dir),
    }


def identity(name: str, *, split: str = "test", data_dir: Path | None = None) -> str:
    """Which items a result measured: equal only for the same items.

    `test`: `NAME#sha256=...` over the set's files (and, for ifeval, both split files; for mgsm
    and xstest, the dev split file their test split is the complement of, so results measured on
    the whole set before the dev split was held out keep an identity of their own); ifeval's and
    humaneval's as every stored result before dev splits records it. `dev`, for the sets in
    `DEV_SPLITS`: `NAME:dev#sha256=...`, over ifeval's, mgsm's or xstest's files and its dev split
    file, or over humaneval's dev split file and converted problems
    (eval_sets.humaneval_dev.dev_digest).

    Raises:
        EvalDataError: an unknown set or split, a set without a dev split, a missing file.
    """
    if name not in EVAL_SETS:
        raise EvalDataError(f"no evaluation set {name!r}; there are {', '.join(EVAL_SETS)}")
    _check_split(split)
    if split == "dev" and name not in DEV_SPLITS:
        raise EvalDataError(f"evaluation set {name!r} has no dev split; {', '.join(DEV_SPLITS)} have one")
    if split == "dev" and name == "humaneval":
        from eval_sets.humaneval_dev import dev_digest

        return f"{name}:dev#sha256={dev_digest(data_dir=data_dir)[:16]}"
    digest = hashlib.sha256()
    paths = [_path(relative, data_dir) for relative in EVAL_SETS[name]]
    if name == "ifeval":
        paths += [IFEVAL_DEV] if split == "dev" else [IFEVAL_HELDOUT, IFEVAL_DEV]
    elif name in ("mgsm", "xstest"):
        paths.append(MGSM_DEV if name == "mgsm" else XSTEST_DEV)  # either split is read through it
        digest.update(f"split={split}".encode())  # the same files, two disjoint sets of items
    for path in paths:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{name}{':dev' if split == 'dev' else ''}#sha256={digest.hexdigest()[:16]}"
