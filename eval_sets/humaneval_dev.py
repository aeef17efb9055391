"""HumanEval's dev split: MBPP's validation problems (task ids 511-600) posed as HumanEval problems.

Choices such as the loop's merge weights are made on a dev split, never on the test split the
report shows. HumanEval has no split of its own to spare; MBPP's validation split (Austin et al.
2021, arXiv 2108.07732: task ids 511-600) is the same kind of task (one Python function from a
description, judged by asserts), apart from HumanEval and from MBPP's train split (601-974),
which is what the code recipes generate from.

Each MBPP problem becomes a `HumanEvalItem` that the humaneval suite runs unchanged:

- `entry_point`: the one top-level function of the reference (`code`) that the tests call;
- `prompt`: the reference's top-level imports, that function's signature and a docstring with
  the problem's text and its first test as an example; it ends where HumanEval's prompts end,
  so the model writes the body or restates the whole function;
- `test`: `def check(candidate)` running every assert of `test_list` against the candidate (the
  asserts call the function by its MBPP name, bound to the candidate), after the problem's
  `test_setup_code` and those of the reference's imports the asserts use (`sys.getsizeof`);
- `canonical_solution`: the whole reference, which restates the function with its helpers.

A problem whose tests need more of the reference than one function (a class, a second function,
a module variable) cannot be posed as one function: `mbpp_to_humaneval` refuses it, saying why.
The split's task ids are recorded in `splits/humaneval_dev.json` (`split_record` makes the
record; `python -m eval_sets.humaneval_dev` prints it); `LEFT_OUT` lists the ids of 511-600 that
are not in it, with why. All 90 convert, and every reference passes its converted tests in the
Docker sandbox; three are left out because MBPP's train split repeats them (`SAME_AS_TRAIN`),
so the split has 87 problems.
"""

from __future__ import annotations

import ast
import hashlib
import json
import textwrap
import warnings
from pathlib import Path
from typing import Any

from eval_sets.loaders import SPLITS, EvalDataError, HumanEvalItem, _jsonl, _path

SPLIT_FILE = SPLITS / "humaneval_dev.json"
SOURCE = "mbpp/mbpp.jsonl"  # relative to the evaluation data folder
VALIDATION = range(511, 601)  # MBPP's validation task ids
RULE = (
    "MBPP's validation split (task ids 511-600) as HumanEval problems "
    "(eval_sets.humaneval_dev.mbpp_to_humaneval), less the ids in eval_sets.humaneval_dev.LEFT_OUT"
)
# MBPP repeats a few validation problems in its train split, which the code recipes generate
# from: validation task -> the train task whose reference passes its converted tests. Screened
# among the train problems sharing at least 30 % of a validation problem's 8-grams (12 pairs);
# tests/eval_sets/test_humaneval_dev.py re-runs the screen in the sandbox.
SAME_AS_TRAIN: dict[int, int] = {527: 767, 591: 625, 595: 699}
# Validation problems not in the split, with why. Every one of the 90 converts and its reference
# passes its converted tests in the sandbox; only the repeats of train problems are left out.
LEFT_OUT: dict[int, str] = {
    task: f"the same problem as MBPP train task {train} (its reference passes these tests)"
    for task, train in SAME_AS_TRAIN.items()
}
DOC_WIDTH = 92  # the docstring's text is wrapped to this width, indent included


class UnconvertibleProblem(EvalDataError):
    """An MBPP problem that cannot be posed as one function with HumanEval's `check(candidate)`."""


def _text(value: Any) -> str:
    """MBPP's text with Unix line ends (its code has Windows ones)."""
    return str(value or "").replace("\r\n", "\n").replace("\r", "\n")


def _parse(source: str) -> ast.Module:
    """The source's tree, without the warnings of MBPP's code (a regex's backslash in a plain string)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(source)


def _read_names(sources: list[str]) -> set[str]:
    """Every name the sources read (not those they only assign)."""
    return {
        node.id
        for source in sources
        for node in ast.walk(_parse(source))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }


def _bound(node: ast.stmt) -> list[str]:
    """The module-level names a statement of the reference binds."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(alias.asname or alias.name).split(".")[0] for alias in node.names]
    targets = [t for n in ast.walk(node) if isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign)
               for t in (n.targets if isinstance(n, ast.Assign) else [n.target])]  # fmt: skip
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _docstring(text: str, example: str) -> str:
    """The function's docstring, indented: the problem's text wrapped, then the example.

    Raises:
        ValueError: the text holds both kinds of triple quotes.
    """
    wrapped = textwrap.fill(" ".join(text.split()), DOC_WIDTH - 4, break_long_words=False)
    body = f"{wrapped}\n>>> {example}"
    quote = '"""' if '"""' not in body else "'''"
    if quote in body:
        raise ValueError("its text holds both kinds of triple quotes")
    prefix = "r" if "\\" in body else ""  # a test's '\n' must stay two characters
    return textwrap.indent(f"{prefix}{quote}{body}\n{quote}\n", "    ")


def mbpp_to_humaneval(row: dict[str, Any]) -> HumanEvalItem:
    """One MBPP problem (`text`, `code`, `test_list`, `test_setup_code`, `task_id`) as a HumanEval
    problem whose `check(candidate)` runs every assert of `test_list`; id `MBPP/<task_id>`.

    Raises:
        UnconvertibleProblem: the reference or a test does not parse, there are no tests, or the
            tests need more of the reference than one function (a class, a second function, a
            variable); the message says which.
    """
    task = row.get("task_id")

    def refuse(reason: str) -> UnconvertibleProblem:
        return UnconvertibleProblem(f"MBPP task {task}: {reason}")

    code = _text(row.get("code"))
    tests = [_text(test).strip() for test in row.get("test_list") or []]
    setup = _text(row.get("test_setup_code")).strip()
    if not tests:
        raise refuse("no tests")
    try:
        tree = _parse(code)
        used = _read_names([*tests, setup])
    except SyntaxError as err:
        raise refuse(f"the reference or a test does not parse ({err.msg})") from None
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    others = {name for node in tree.body if not isinstance(node, ast.Import | ast.ImportFrom)
              for name in _bound(node)} - functions.keys()  # fmt: skip
    if used & others:
        raise refuse(f"the tests use {', '.join(sorted(used & others))}, which the reference defines too")
    called = sorted(used & functions.keys())
    if len(called) != 1:
        listed = f" ({', '.join(called)})" if called else ""
        raise refuse(f"the tests call {len(called)} functions of the reference{listed}, not one")
    entry = functions[called[0]]
    returns = f" -> {ast.unparse(entry.returns)}" if entry.returns else ""
    header = "".join(f"{ast.get_source_segment(code, node)}\n" for node in imports)
    try:
        docstring = _docstring(_text(row.get("text")), tests[0])
    except ValueError as err:
        raise refuse(str(err)) from None
    prompt = f"{header}\n\n" if header else ""
    prompt += f"def {entry.name}({ast.unparse(entry.args)}){returns}:\n{docstring}"
    needed = [f"{ast.get_source_segment(code, node)}\n" for node in imports if set(_bound(node)) & used]
    prelude = "".join(needed) + (f"{setup}\n" if setup else "")
    test = f"{prelude}\n\n" if prelude else ""
    test += f"def check(candidate):\n    {entry.name} = candidate  # the asserts call it by its MBPP name\n"
    test += "".join(textwrap.indent(t, "    ") + "\n" for t in tests)
    return HumanEvalItem(
        id=f"MBPP/{task}", prompt=prompt, canonical_solution=code, test=test, entry_point=entry.name
    )


def _validation_rows(data_dir: Path | None) -> dict[int, dict[str, Any]]:
    path = _path(SOURCE, data_dir)
    rows = {row.get("task_id"): row for _, row in _jsonl(path)}
    return {task: rows[task] for task in VALIDATION if task in rows}


def split_record(data_dir: Path | None = None) -> dict[str, Any]:
    """What `splits/humaneval_dev.json` records, made afresh from the data: the source, the rule,
    the ids left out with why, and the task ids (those of 511-600 that convert and are not left
    out).

    Raises:
        UnconvertibleProblem: a problem does not convert and `LEFT_OUT` does not list it (every
            problem left out is listed, with why).
    """
    ids = []
    for task, row in _validation_rows(data_dir).items():
        if task in LEFT_OUT:
            continue
        try:
            mbpp_to_humaneval(row)
        except UnconvertibleProblem as err:
            raise UnconvertibleProblem(f"{err}; list it in eval_sets.humaneval_dev.LEFT_OUT") from None
        ids.append(task)
    left_out = {str(task): reason for task, reason in LEFT_OUT.items()}
    return {"source": SOURCE, "rule": RULE, "left_out": left_out, "task_ids": ids}


def recorded_task_ids() -> list[int]:
    """The task ids recorded in `splits/humaneval_dev.json`, in order."""
    return list(json.loads(SPLIT_FILE.read_text())["task_ids"])


def load_humaneval_dev(*, data_dir: Path | None = None) -> list[HumanEvalItem]:
    """The dev split's problems, in task id order (the ids recorded in the split file).

    Raises:
        EvalDataError: MBPP's file is missing, lacks a recorded task, or a recorded task no
            longer converts.
    """
    rows = _validation_rows(data_dir)
    missing = [task for task in recorded_task_ids() if task not in rows]
    if missing:
        raise EvalDataError(f"{_path(SOURCE, data_dir)} has no MBPP task {missing[0]} of the dev split")
    return [mbpp_to_humaneval(rows[task]) for task in recorded_task_ids()]


def dev_digest(*, data_dir: Path | None = None) -> str:
    """A sha256 over the split file and the converted items (the conversion is code, so its
    output is what is hashed): equal only for the same dev problems."""
    digest = hashlib.sha256(SPLIT_FILE.read_bytes())
    for item in load_humaneval_dev(data_dir=data_dir):
        for part in (item.id, item.prompt, item.canonical_solution, item.test, item.entry_point):
            digest.update(hashlib.sha256(part.encode()).digest())
    return digest.hexdigest()


if __name__ == "__main__":
    print(json.dumps(split_record()))
