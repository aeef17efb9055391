"""Mutants of a Python program from named AST mutation operators.

A synthetic unit test is worth keeping only when it tells a correct program from a slightly
wrong one (Command A report, 3.3.4): each operator below makes one small change at one site of
the reference solution, and a test that fails on at least one mutant has shown it can catch a
bug. This module only writes mutant source text; the mutants run in the sandbox, never here.

Operators (`OPERATORS`, in this order):

| name | change |
|---|---|
| comparison_negate | `<` -> `>=`, `==` -> `!=`, `in` -> `not in`, `is` -> `is not` (and back) |
| comparison_boundary | `<` <-> `<=`, `>` <-> `>=` |
| constant_off_by_one | an integer literal `k` -> `k + 1` and `k - 1` (two mutants per site) |
| bool_op_swap | `and` <-> `or` |
| arithmetic_swap | `+` <-> `-`, `*` <-> `/`, `//` -> `*`, `%` -> `//`, `**` -> `*` (also in `x += ...`) |
| return_none | `return X` -> `return None` |
| statement_delete | an assignment or expression statement -> `pass` |
| negation_remove | `not X` -> `X` |
| boolean_flip | `True` <-> `False` |

Written here rather than taken from a mutation-testing tool: mutmut and cosmic-ray keep their
operators inside their test runners (libcst/parso trees driven by their own sessions and
pytest), with no function that turns a source string into mutant strings; these operators are
the textbook set those tools also implement.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# A site is a node (or a statement list and an index) an operator can change; a change returns
# False when it does not apply after all.
Site = tuple[ast.AST, ...]


@dataclass(frozen=True)
class Mutant:
    """One mutant: the operator that made it, where (line, column), and its source."""

    operator: str
    line: int
    column: int
    source: str

    @property
    def label(self) -> str:
        """`operator@line:column`, for reports."""
        return f"{self.operator}@{self.line}:{self.column}"


_NEGATE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
_BOUNDARY: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
}
_ARITHMETIC: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
}  # fmt: skip


def _is_docstring(statement: ast.stmt, body: list[ast.stmt]) -> bool:
    return (
        body
        and statement is body[0]
        and isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _integer(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


class _Operator:
    """A named operator: which nodes it applies to, and how many variants per site."""

    def __init__(
        self,
        name: str,
        applies: Callable[[ast.AST], bool],
        mutate: Callable[[ast.AST, int], ast.AST | None],
        variants: int = 1,
    ) -> None:
        self.name = name
        self.applies = applies
        self.mutate = mutate  # returns the replacement node (or the node changed in place)
        self.variants = variants


def _compare(table: dict[type[ast.cmpop], type[ast.cmpop]]) -> _Operator:
    def mutate(node: ast.AST, _: int) -> ast.AST:
        assert isinstance(node, ast.Compare)
        node.ops = [table.get(type(op), type(op))() for op in node.ops[:1]] + node.ops[1:]
        return node

    return _Operator(
        "comparison_negate" if table is _NEGATE else "comparison_boundary",
        lambda node: isinstance(node, ast.Compare) and type(node.ops[0]) in table,
        mutate,
    )


def _off_by_one(node: ast.AST, variant: int) -> ast.AST:
    assert isinstance(node, ast.Constant)
    return ast.Constant(node.value + (1 if variant == 0 else -1))


def _bool_op(node: ast.AST, _: int) -> ast.AST:
    assert isinstance(node, ast.BoolOp)
    node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    return node


def _arithmetic(node: ast.AST, _: int) -> ast.AST:
    assert isinstance(node, ast.BinOp | ast.AugAssign)
    node.op = _ARITHMETIC[type(node.op)]()
    return node


def _return_none(node: ast.AST, _: int) -> ast.AST:
    assert isinstance(node, ast.Return)
    return ast.Return(ast.Constant(None))


def _delete(node: ast.AST, _: int) -> ast.AST:
    return ast.Pass()


def _negation_remove(node: ast.AST, _: int) -> ast.AST:
    assert isinstance(node, ast.UnaryOp)
    return node.operand


def _boolean_flip(node: ast.AST, _: int) -> ast.AST:
    assert isinstance(node, ast.Constant)
    return ast.Constant(not node.value)


OPERATORS: dict[str, _Operator] = {
    op.name: op
    for op in (
        _compare(_NEGATE),
        _compare(_BOUNDARY),
        _Operator("constant_off_by_one", _integer, _off_by_one, variants=2),
        _Operator("bool_op_swap", lambda n: isinstance(n, ast.BoolOp), _bool_op),
        _Operator(
            "arithmetic_swap",
            lambda n: isinstance(n, ast.BinOp | ast.AugAssign) and type(n.op) in _ARITHMETIC,
            _arithmetic,
        ),
        _Operator(
            "return_none",
            lambda n: (
                isinstance(n, ast.Return)
                and n.value is not None
                and not (isinstance(n.value, ast.Constant) and n.value.value is None)
            ),
            _return_none,
        ),
        _Operator(
            "statement_delete",
            lambda n: isinstance(n, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Expr),
            _delete,
        ),
        _Operator(
            "negation_remove",
            lambda n: isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not),
            _negation_remove,
        ),
        _Operator(
            "boolean_flip",
            lambda n: isinstance(n, ast.Constant) and isinstance(n.value, bool),
            _boolean_flip,
        ),
    )
}


def _slots(tree: ast.AST) -> Iterator[tuple[ast.AST, str, int | None, ast.AST]]:
    """Every (parent, field, index, child) in a fixed order; docstrings and annotations skipped
    (changing them changes no behaviour)."""
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if field in ("annotation", "returns", "type_comment", "decorator_list"):
                continue
            if isinstance(value, list):
                for index, child in enumerate(value):
                    if isinstance(child, ast.AST) and not (
                        isinstance(child, ast.stmt) and _is_docstring(child, value)
                    ):
                        yield parent, field, index, child
            elif isinstance(value, ast.AST):
                yield parent, field, None, value


def _sites(tree: ast.AST, operator: _Operator) -> list[int]:
    """Positions (in `_slots` order) where the operator applies."""
    return [k for k, (*_, child) in enumerate(_slots(tree)) if operator.applies(child)]


def _apply(tree: ast.Module, operator: _Operator, position: int, variant: int) -> tuple[ast.Module, ast.AST]:
    mutated = copy.deepcopy(tree)
    for k, (parent, field, index, child) in enumerate(_slots(mutated)):
        if k != position:
            continue
        replacement = operator.mutate(child, variant)
        if index is None:
            setattr(parent, field, replacement)
        else:
            getattr(parent, field)[index] = replacement
        return mutated, child
    raise IndexError(position)  # pragma: no cover - positions come from _sites on an equal tree


def mutants(source: str, operators: list[str] | None = None, limit: int | None = None) -> list[Mutant]:
    """The distinct mutants of a Python program, each differing from it in behaviour-relevant text.

    Mutants whose source equals the original's (after normalising with `ast.unparse`) or that
    do not compile are left out, as are duplicates. With `limit`, mutants are taken round-robin
    across operators, so every operator that applies is represented.

    Args:
        source: The program (it must parse).
        operators: Names from `OPERATORS` (default: all).
        limit: At most this many mutants.

    Raises:
        SyntaxError: the program does not parse.
        KeyError: an unknown operator name.
    """
    tree = ast.parse(source)
    original = ast.unparse(tree)
    names = operators or list(OPERATORS)
    per_operator: list[list[Mutant]] = []
    seen = {original}
    for name in names:
        operator = OPERATORS[name]
        found: list[Mutant] = []
        for position in _sites(tree, operator):
            for variant in range(operator.variants):
                mutated, site = _apply(tree, operator, position, variant)
                text = ast.unparse(ast.fix_missing_locations(mutated))
                if text in seen:
                    continue
                try:
                    compile(text, "<mutant>", "exec")  # compiling runs nothing
                except (SyntaxError, ValueError):
                    continue
                seen.add(text)
                found.append(Mutant(name, getattr(site, "lineno", 0), getattr(site, "col_offset", 0), text))
        per_operator.append(found)
    ordered = [m for group in _round_robin(per_operator) for m in group]
    return ordered[:limit] if limit is not None else ordered


def _round_robin(groups: list[list[Mutant]]) -> Iterator[list[Mutant]]:
    depth = max((len(g) for g in groups), default=0)
    for k in range(depth):
        yield [g[k] for g in groups if k < len(g)]
