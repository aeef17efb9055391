"""The mutation operators: each one makes the change its name says, at every site it applies
to, and nothing else; mutants are distinct, compile, and differ from the original. Nothing is
executed here except the mutants' pure functions below (written by this test, not by a model)."""

import ast

import pytest

from judges.code.mutation import OPERATORS, mutants

# For each operator: a program, and the set of mutant sources it must produce (normalised).
CASES = {
    "comparison_negate": ("def f(a, b):\n    return a < b\n", {"def f(a, b):\n    return a >= b"}),
    "comparison_boundary": ("def f(a, b):\n    return a > b\n", {"def f(a, b):\n    return a >= b"}),
    "constant_off_by_one": (
        "def f(a):\n    return a + 2\n",
        {"def f(a):\n    return a + 3", "def f(a):\n    return a + 1"},
    ),
    "bool_op_swap": ("def f(a, b):\n    return a and b\n", {"def f(a, b):\n    return a or b"}),
    "arithmetic_swap": (
        "def f(a, b):\n    a += b\n    return a * b\n",
        {"def f(a, b):\n    a -= b\n    return a * b", "def f(a, b):\n    a += b\n    return a / b"},
    ),
    "return_none": ("def f(a):\n    return a\n", {"def f(a):\n    return None"}),
    "statement_delete": (
        "def f(a):\n    a = a + 1\n    return a\n",
        {"def f(a):\n    pass\n    return a"},
    ),
    "negation_remove": ("def f(a):\n    return not a\n", {"def f(a):\n    return a"}),
    "boolean_flip": ("def f():\n    return True\n", {"def f():\n    return False"}),
}


def test_every_operator_has_a_case() -> None:
    assert set(CASES) == set(OPERATORS)


@pytest.mark.parametrize("operator", list(CASES))
def test_operator_makes_exactly_its_mutants(operator: str) -> None:
    source, expected = CASES[operator]
    made = mutants(source, operators=[operator])
    assert {m.source for m in made} == expected
    assert all(m.operator == operator and m.line >= 1 for m in made)


def test_mutants_behave_differently_from_the_original() -> None:
    source = (
        "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n"
        "    return x\n"
    )
    made = mutants(source)
    assert len({m.source for m in made}) == len(made) == 7  # 2 negations, 2 boundaries, 3 returns
    namespace: dict = {}
    exec(compile(source, "<original>", "exec"), namespace)  # noqa: S102 - this test's own code
    inputs = [(x, 0, 10) for x in range(-3, 14)]
    killed = 0
    for mutant in made:
        scope: dict = {}
        exec(compile(mutant.source, "<mutant>", "exec"), scope)  # noqa: S102 - mutants of the code above
        killed += any(scope["clamp"](*args) != namespace["clamp"](*args) for args in inputs)
    assert killed == len(made) - 2  # the two boundary flips are equivalent mutants (x == lo returns lo)


def test_docstrings_annotations_and_no_op_sites_are_left_alone() -> None:
    source = 'def f(a: int = 1) -> int:\n    """Return 3."""\n    return None\n'
    made = mutants(source)
    # Only the default `1` is a site: not the docstring, the annotations, or `return None`.
    assert [m.operator for m in made] == ["constant_off_by_one", "constant_off_by_one"]
    assert all('"""Return 3."""' in m.source for m in made)


def test_limit_takes_operators_round_robin() -> None:
    source = "def f(a, b):\n    if a < b and a > 0:\n        return a + 1\n    return b - 1\n"
    made = mutants(source, limit=4)
    assert len(made) == 4 and len({m.operator for m in made}) == 4


def test_bad_input() -> None:
    with pytest.raises(SyntaxError):
        mutants("def f(:\n")
    with pytest.raises(KeyError):
        mutants("x = 1\n", operators=["no_such_operator"])
    assert all(ast.parse(m.source) for m in mutants("x = [i for i in range(3) if i != 1]\n"))
