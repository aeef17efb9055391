"""Canonical SQL text by static analysis (sqlglot), so that equivalent queries dedupe.

Two completions that differ only in formatting, keyword or identifier case, table aliases (a
table that appears once in the query) or unused output-column aliases get the same canonical
text. Nothing is executed here: whether a query is correct is the sandbox's verdict (result sets
compared with the reference's); the canonical text only decides which correct queries are the
same query.
"""

from __future__ import annotations

import re
from collections import Counter

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

DIALECT = "sqlite"
_SPACES = re.compile(r"\s+")


def canonical_sql(query: str, dialect: str = DIALECT) -> str | None:
    """The canonical text of one SQL statement, or None when sqlglot cannot parse it.

    Args:
        query: One statement (a trailing `;` is ignored).
        dialect: The sqlglot dialect to read and write.
    """
    text = query.strip().rstrip(";").strip()
    if not text:
        return None
    try:
        statements = sqlglot.parse(text, read=dialect)
    except SqlglotError:
        return None
    if len(statements) != 1 or statements[0] is None:
        return None
    tree = statements[0]
    _drop_table_aliases(tree)
    _drop_unused_output_aliases(tree)
    return tree.sql(dialect=dialect, normalize=True)


def orders_rows(query: str, dialect: str = DIALECT) -> bool:
    """Whether the statement's result is ordered: a top-level ORDER BY (one in a subquery does
    not order the result). Falls back to a text search when sqlglot cannot parse it."""
    try:
        statements = sqlglot.parse(query.strip().rstrip(";"), read=dialect)
    except SqlglotError:
        return re.search(r"\border\s+by\b", query, re.IGNORECASE) is not None
    tree = statements[0] if len(statements) == 1 else None
    return tree is not None and tree.args.get("order") is not None


def dedupe_key(query: str, dialect: str = DIALECT) -> str:
    """The canonical text, or the query with whitespace collapsed when it does not parse."""
    return canonical_sql(query, dialect) or _SPACES.sub(" ", query.strip().rstrip(";")).lower()


def _drop_table_aliases(tree: exp.Expression) -> None:
    """`FROM employees AS e ... e.name` -> `FROM employees ... employees.name`, for tables that
    appear once (a self-join needs its aliases); with a single table, `t.a` -> `a`."""
    tables = list(tree.find_all(exp.Table))
    if len(tables) == 1:
        tables[0].set("alias", None)
        for column in tree.find_all(exp.Column):
            column.set("table", None)
        return
    counts = Counter(table.name.lower() for table in tables)
    renames: dict[str, str] = {}
    for table in tables:
        if table.alias and counts[table.name.lower()] == 1:
            renames[table.alias.lower()] = table.name
            table.set("alias", None)
    if not renames:
        return
    for column in tree.find_all(exp.Column):
        if column.table and column.table.lower() in renames:
            column.set("table", exp.to_identifier(renames[column.table.lower()]))


def _drop_unused_output_aliases(tree: exp.Expression) -> None:
    """Output-column aliases of the outermost SELECT that nothing refers to: the result set's
    rows (all the judge compares) do not depend on them."""
    if not isinstance(tree, exp.Select):
        return
    referenced = {
        column.name.lower()
        for column in tree.find_all(exp.Column)
        if not column.table and not isinstance(column.parent, exp.Alias)
    }
    for projection in list(tree.expressions):
        if isinstance(projection, exp.Alias) and projection.alias.lower() not in referenced:
            projection.replace(projection.this)
