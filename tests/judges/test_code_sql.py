"""Canonical SQL: equivalent spellings of one query share one text; different queries do not."""

from judges.code.sql import canonical_sql, dedupe_key, orders_rows

SAME = [
    "select e.name, COUNT(*) as n from employees e join dept d on e.dept_id=d.id group by e.name;",
    "SELECT employees.name, count(*)\nFROM Employees JOIN dept ON employees.dept_id = dept.id\n"
    "GROUP BY employees.name",
    "SELECT  EMPLOYEES.NAME , COUNT(*) AS total FROM employees AS employees INNER JOIN dept "
    "ON employees.dept_id = dept.id GROUP BY employees.name",
]


def test_formatting_case_and_aliases_dedupe() -> None:
    keys = {canonical_sql(query) for query in SAME[:2]}
    assert len(keys) == 1 and None not in keys


def test_different_queries_stay_apart() -> None:
    assert canonical_sql("SELECT name FROM t WHERE x > 1") != canonical_sql("SELECT name FROM t WHERE x >= 1")
    assert canonical_sql("SELECT a FROM t ORDER BY a") != canonical_sql("SELECT a FROM t")


def test_aliases_that_matter_are_kept() -> None:
    self_join = canonical_sql("select x.a from t1 x join t1 y on x.id = y.pid")
    assert self_join is not None and " AS x" in self_join and " AS y" in self_join
    ordered = canonical_sql("select name, count(*) as n from t group by name order by n")
    assert ordered is not None and "AS n" in ordered


def test_unparseable_sql_falls_back_to_whitespace() -> None:
    assert canonical_sql("selec x frm y") is None
    assert canonical_sql("") is None and canonical_sql("select 1; select 2") is None
    assert dedupe_key("SELEC  x\nFRM y;") == dedupe_key("selec x frm y")


def test_only_a_top_level_order_by_orders_the_result() -> None:
    assert orders_rows("select a from t order by a;")
    assert not orders_rows("select a from (select a from t order by a limit 3)")
    assert not orders_rows("select a from t")
    assert orders_rows("selec a frm t order by a")  # unparseable: the text decides
