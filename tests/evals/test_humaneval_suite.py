"""HumanEval in the real Docker sandbox: canonical solutions score pass@1 = 1, broken code 0, a reply
restating the function in a fenced block passes; the pass@k estimator matches hand-computed values;
the dev split (MBPP validation problems) runs the same way."""

from collections.abc import Iterator, Sequence
from math import comb
from pathlib import Path

import pytest
import resources

from eval_sets import HumanEvalItem, identity, load_humaneval
from evals.base import Conversation, EvalError, Generator
from evals.suites.humaneval import (
    HumanEvalSettings,
    HumanEvalSuite,
    build_program,
    drop_top_level_scripts,
    extract_program_text,
    pass_at_k,
)

FENCE = "`" * 3
LIMIT = 6


@pytest.fixture(scope="module")
def sandbox() -> Iterator:
    """A small warm Docker sandbox for this module (skips loudly, or fails under ASSAY_REQUIRE=docker)."""
    opened = resources.open_docker_sandbox(pool_size=2)
    yield opened
    opened.close()


@pytest.fixture
def items(shared_data: Path) -> list[HumanEvalItem]:
    return load_humaneval(data_dir=shared_data)


class ScriptedGenerator:
    """A Generator (our protocol) whose replies come from a function of the problem."""

    model_identity = "scripted"

    def __init__(self, items: Sequence[HumanEvalItem], reply) -> None:  # noqa: ANN001
        self.items = items
        self.reply = reply  # (item, sample index, temperature) -> str | Exception
        self.calls: list[tuple[int, int, float]] = []

    def item_for(self, conversation: Conversation) -> HumanEvalItem:
        content = conversation[-1]["content"]
        return next(item for item in self.items if item.prompt in content)

    def complete(
        self,
        conversations: Sequence[Conversation],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int = 0,
    ) -> list[list[str] | Exception]:
        self.calls.append((len(conversations), n, temperature))
        out: list[list[str] | Exception] = []
        for conversation in conversations:
            item = self.item_for(conversation)
            replies = [self.reply(item, i, temperature) for i in range(n)]
            failed = next((r for r in replies if isinstance(r, Exception)), None)
            out.append(failed or replies)
        return out


def run(sandbox, shared_data: Path, items, reply, **settings) -> tuple:  # noqa: ANN001
    generator: Generator = ScriptedGenerator(items, reply)  # a test double of our protocol
    suite = HumanEvalSuite(**settings, sandbox=sandbox, data_dir=shared_data)
    return suite.run(generator, limit=LIMIT), generator


@pytest.mark.docker
def test_canonical_solutions_pass_and_broken_code_fails(sandbox, shared_data: Path, items) -> None:
    result, generator = run(sandbox, shared_data, items, lambda item, i, t: item.canonical_solution)
    assert generator.calls == [(LIMIT, 1, 0.0)]  # greedy: one sample at temperature 0
    metric = result.metric("pass@1")
    assert (metric.value, metric.stderr, metric.n) == (1.0, 0.0, LIMIT)
    assert result.suite == "humaneval" and result.eval_set.startswith("humaneval#sha256=")
    assert [r["id"] for r in result.items] == [item.id for item in items[:LIMIT]]
    assert all(r["passed"] and r["status"] == "passed" and r["error"] == "" for r in result.items)
    assert result.settings["limit"] == LIMIT and result.settings["problems"] == LIMIT

    broken, _ = run(sandbox, shared_data, items, lambda item, i, t: "    return None\n")
    assert broken.metric("pass@1").value == 0.0
    assert all(not r["passed"] and r["status"] in ("failed", "runtime_error") for r in broken.items)
    assert all(r["error"] for r in broken.items)  # the sandbox says why

    half = {items[0].id, items[2].id, items[4].id}  # 3 of 6 right: the mean and its stderr
    mixed, _ = run(
        sandbox, shared_data, items,
        lambda item, i, t: item.canonical_solution if item.id in half else "    return None\n",
    )  # fmt: skip
    metric = mixed.metric("pass@1")
    assert metric.value == 0.5 and metric.stderr == pytest.approx((0.25 * LIMIT / (LIMIT - 1) / LIMIT) ** 0.5)


@pytest.mark.docker
def test_a_reply_restating_the_function_in_a_fenced_block_passes(sandbox, shared_data: Path, items) -> None:
    def restated(item: HumanEvalItem, i: int, t: float) -> str:
        code = item.prompt + item.canonical_solution
        usage = f"print({item.entry_point}(None))  # a usage example that would crash"
        return f"Sure! Here it is:\n\n{FENCE}python\n{code}\n{usage}\n{FENCE}\n\nIt works because..."

    result, _ = run(sandbox, shared_data, items, restated)
    assert result.metric("pass@1").value == 1.0, [r["error"] for r in result.items]


@pytest.mark.docker
def test_pass_at_k_from_samples_and_generation_errors(sandbox, shared_data: Path, items) -> None:
    # Sample i of n=4 passes when i < c(item): c = 0, 1, 2, 3, 4, 4 for the six problems.
    passing = {item.id: min(index, 4) for index, item in enumerate(items[:LIMIT])}

    def reply(item: HumanEvalItem, i: int, t: float) -> str:
        if t == 0.0:
            return item.canonical_solution
        return item.canonical_solution if i < passing[item.id] else "    return None\n"

    result, generator = run(sandbox, shared_data, items, reply, samples=4, k=[1, 2], temperature=0.7)
    assert generator.calls == [(LIMIT, 1, 0.0), (LIMIT, 4, 0.7)]
    assert [r["sampled_passed"] for r in result.items] == [0, 1, 2, 3, 4, 4]
    expected_1 = [0, 0.25, 0.5, 0.75, 1, 1]
    expected_2 = [0, 0.5, 5 / 6, 1, 1, 1]  # 1 - C(4-c, 2) / C(4, 2)
    assert result.metric("pass@1_sampled").value == pytest.approx(sum(expected_1) / LIMIT)
    assert result.metric("pass@2_sampled").value == pytest.approx(sum(expected_2) / LIMIT)
    assert result.metric("pass@1").value == 1.0

    def failing(item: HumanEvalItem, i: int, t: float) -> str | Exception:
        return RuntimeError("engine died") if item.id == items[1].id else item.canonical_solution

    errors, _ = run(sandbox, shared_data, items, failing)
    assert errors.metric("pass@1").value == pytest.approx(5 / 6)
    record = errors.items[1]
    assert record["status"] == "generation_error" and "engine died" in record["error"]
    assert errors.settings["generation_errors"] == 1


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (5, 4, 2, 1.0),  # n - c = 1 < k: every pair of samples holds a pass
        (5, 5, 5, 1.0),
        (5, 0, 3, 0.0),
        (1, 1, 1, 1.0),
        (200, 13, 100, 1 - comb(187, 100) / comb(200, 100)),
    ],
)
def test_pass_at_k_estimator_matches_hand_computed_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, 2, 0), (5, 2, 6), (3, -1, 1)])
def test_pass_at_k_refuses_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(n, c, k)


def test_k_above_samples_is_refused() -> None:
    with pytest.raises(EvalError, match="every k must be between 1 and samples"):
        HumanEvalSuite(samples=5, k=[1, 10])
    with pytest.raises(EvalError, match="max_tokens"):
        HumanEvalSuite(max_tokens=0)
    assert HumanEvalSuite(max_tokens=64, settings=HumanEvalSettings(timeout_s=3)).settings.max_tokens == 64


ITEM = HumanEvalItem(
    id="HumanEval/x",
    prompt='import math\n\n\ndef helper(x):\n    return x\n\n\ndef area(r):\n    """Area."""\n',
    canonical_solution="    return math.pi * helper(r) ** 2\n",
    test="def check(candidate):\n    assert candidate(1) > 3\n",
    entry_point="area",
)


def test_programs_are_built_from_bodies_and_from_restated_functions() -> None:
    body = build_program(ITEM, ITEM.canonical_solution)
    assert body == ITEM.prompt + ITEM.canonical_solution  # HumanEval's prompt + completion
    flush_left = build_program(ITEM, "return math.pi * helper(r) ** 2")
    assert flush_left == ITEM.prompt + ITEM.canonical_solution  # indented under the signature
    fenced_body = build_program(ITEM, f"{FENCE}python\n    return math.pi * helper(r) ** 2\n{FENCE}")
    assert fenced_body == ITEM.prompt + ITEM.canonical_solution
    restated = f"{FENCE}python\ndef area(r):\n    return math.pi * helper(r) ** 2\n\nprint(area(2))\n{FENCE}"
    program = build_program(ITEM, restated)
    assert program.startswith(ITEM.prompt)  # the prompt's import and helper stay available
    assert program.rstrip().endswith("return math.pi * helper(r) ** 2") and "print(area(2))" not in program
    namespace: dict = {}
    exec(compile(program, "program", "exec"), namespace)  # noqa: S102 - our own test program
    assert namespace["area"](1) == pytest.approx(3.14159, abs=1e-4)


def test_code_is_taken_from_python_blocks_before_untagged_ones() -> None:
    reply = f"{FENCE}\nnot this\n{FENCE}\n{FENCE}python\nx = 1\n{FENCE}\n{FENCE}py\nlonger = 2\n{FENCE}"
    assert extract_program_text(reply) == "longer = 2\n"
    assert extract_program_text("    return 1\n") == "    return 1\n"  # no fence: the raw reply


def test_usage_examples_are_dropped_and_unparsable_code_kept() -> None:
    code = "import os\nX = 1\n\ndef f():\n    return X\n\nassert f() == 2\n"
    code += 'if __name__ == "__main__":\n    f()'
    assert drop_top_level_scripts(code + "\n") == "import os\nX = 1\n\ndef f():\n    return X\n\n"
    assert drop_top_level_scripts("def f(:\n") == "def f(:\n"


@pytest.mark.docker
def test_registered_in_the_harness_and_built_from_its_options(sandbox, shared_data: Path, items) -> None:
    from evals.run import evaluate
    from evals.suites import SUITES, resolve_suites

    assert SUITES["humaneval"] is HumanEvalSuite and "humaneval" in resolve_suites(["core"])
    generator = ScriptedGenerator(items, lambda item, i, t: item.canonical_solution)
    options = {"max_tokens": 99, "languages": ["en"], "data_dir": shared_data, "sandbox": sandbox}
    (run,) = evaluate(generator, ["humaneval"], limit=2, options=options)
    assert run.result.metric("pass@1").value == 1.0 and run.result.metric("pass@1").n == 2
    assert run.result.settings["sampling"] == {"n": 1, "temperature": 0.0, "max_tokens": 99}


@pytest.fixture
def dev_items(shared_data: Path) -> list[HumanEvalItem]:
    return load_humaneval(split="dev", data_dir=shared_data)


def reference_body(item: HumanEvalItem) -> str | None:
    """The reference function's body alone, a HumanEval-style completion of the prompt (None
    where the reference has helpers beside the function)."""
    import ast
    import textwrap
    import warnings

    with warnings.catch_warnings():  # MBPP's regexes in plain strings ('\.')
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(item.canonical_solution)
    (function, *others) = [n for n in tree.body if not isinstance(n, ast.Import | ast.ImportFrom)]
    if others:
        return None
    return textwrap.indent("\n".join(ast.unparse(statement) for statement in function.body), "    ") + "\n"


def run_dev(sandbox, shared_data: Path, items, reply, limit: int | None = None):  # noqa: ANN001, ANN201
    suite = HumanEvalSuite(split="dev", sandbox=sandbox, data_dir=shared_data)
    return suite.run(ScriptedGenerator(items, reply), limit=limit)


@pytest.mark.docker
def test_dev_split_references_and_bodies_pass_and_broken_code_fails(
    sandbox, shared_data: Path, dev_items
) -> None:
    """Every one of the dev split's 87 references passes its converted `check`; so does the body
    alone after the prompt; `return None` fails (a fixed first 20 here, all 87 in the slow test)."""
    result = run_dev(sandbox, shared_data, dev_items, lambda item, i, t: item.canonical_solution)
    metric = result.metric("pass@1")
    assert (metric.value, metric.n) == (1.0, 87), [
        (r["id"], r["error"]) for r in result.items if not r["passed"]
    ]
    assert result.eval_set == identity("humaneval", split="dev", data_dir=shared_data)
    assert result.settings["split"] == "dev" and result.items[0]["id"] == "MBPP/511"

    bodies = {item.id: reference_body(item) for item in dev_items[:20]}
    assert sum(body is not None for body in bodies.values()) >= 15
    completed = run_dev(
        sandbox, shared_data, dev_items, lambda item, i, t: bodies[item.id] or item.canonical_solution, 20
    )
    assert completed.metric("pass@1").value == 1.0, [r["error"] for r in completed.items if not r["passed"]]

    broken = run_dev(sandbox, shared_data, dev_items, lambda item, i, t: "    return None\n", 20)
    assert broken.metric("pass@1").value == 0.0 and all(r["error"] for r in broken.items)


@pytest.mark.slow
@pytest.mark.docker
def test_every_dev_problem_fails_a_broken_solution(sandbox, shared_data: Path, dev_items) -> None:
    broken = run_dev(sandbox, shared_data, dev_items, lambda item, i, t: "    return None\n")
    assert broken.metric("pass@1").n == 87
    assert [r["id"] for r in broken.items if r["passed"]] == []


def test_the_split_is_an_option_of_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    from evals.run import build_suite
    from evals.suites import SUITES

    class WithoutDevSplit:  # a suite whose constructor takes no split (every real one has one now)
        def __init__(self, *, max_tokens: int | None = None) -> None:
            pass

    assert build_suite("humaneval").split == "test"
    assert build_suite("humaneval", split="dev", languages=["en"]).split == "dev"
    with pytest.raises(EvalError, match="no split 'train'"):
        HumanEvalSuite(split="train")
    monkeypatch.setitem(SUITES, "plain", WithoutDevSplit)
    with pytest.raises(EvalError, match="suite 'plain' has no dev split"):  # never its test split instead
        build_suite("plain", split="dev")
    assert build_suite("mgsm", split="test", languages=["en"]).languages == ("en",)
