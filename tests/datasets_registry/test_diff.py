"""Dataset diff: rows added, removed and changed by id, schema changes, figure deltas, errors."""

import pyarrow as pa
import pytest
from rich.console import Console

from assay.cli.render import render_diff
from datasets_registry import Registry, RegistryError
from datasets_registry.diff import DatasetDiff, Delta, diff_versions
from datasets_registry.kinds import MESSAGES_TYPE

SCORES_TYPE = pa.struct([("ifeval_best", pa.float64()), ("ifeval_worst", pa.float64())])


def row(id_: str, answer: str, best: float, language: str | None = "en") -> dict:
    return {
        "id": id_,
        "language": language,
        "messages": [
            {"role": "user", "content": f"question {id_}"},
            {"role": "assistant", "content": answer},
        ],
        "scores": {"ifeval_best": best, "ifeval_worst": 0.0},
    }


def table(rows: list[dict]) -> pa.Table:
    schema = pa.schema(
        [("id", pa.string()), ("language", pa.string()), ("messages", MESSAGES_TYPE), ("scores", SCORES_TYPE)]
    )
    return pa.Table.from_pylist(rows, schema=schema)


OLD = [row("a", "A", 0.2), row("b", "B", 0.4), row("c", "C", 0.6), row("d", "D", 0.8)]
# a removed; e added; b rescored; c's answer edited inside the message list; d unchanged but moved;
# e has no language.
NEW = [row("e", "E", 1.0, language=None), row("d", "D", 0.8), row("c", "C!", 0.6), row("b", "B", 0.5)]


@pytest.fixture
def diff(registry: Registry) -> DatasetDiff:
    old = registry.write("chat", table(OLD), kind="sft")
    new = registry.write("chat", table(NEW), kind="sft")
    return diff_versions(old, new)


def test_added_removed_changed_by_id(diff: DatasetDiff) -> None:
    assert (diff.old_ref, diff.new_ref) == ("chat@1", "chat@2")
    assert (diff.added.count, diff.added.sample) == (1, ["e"])
    assert (diff.removed.count, diff.removed.sample) == (1, ["a"])
    assert (diff.changed.count, diff.changed.sample) == (2, ["b", "c"])
    assert diff.unchanged == 1  # d moved position but did not change, so it is not reported


def test_change_inside_nested_message_list_is_attributed_to_its_column(diff: DatasetDiff) -> None:
    assert diff.changed_by_column == {"language": 0, "messages": 1, "scores": 1}
    assert diff.compared_columns == ["language", "messages", "scores"]
    assert diff.uncompared_columns == []
    assert diff.schema.unchanged


def test_figure_deltas_old_to_new(diff: DatasetDiff) -> None:
    assert diff.row_count == Delta("rows", 4, 4) and diff.row_count.delta == 0
    nulls = {d.name: (d.old, d.new) for d in diff.null_counts}
    assert nulls == {"id": (0, 0), "language": (0, 1), "messages": (0, 0), "scores": (0, 0)}
    means = {d.name: d for d in diff.means}
    assert set(means) == {"scores.ifeval_best", "scores.ifeval_worst"}
    best = means["scores.ifeval_best"]
    assert best.old == pytest.approx(0.5)  # (0.2 + 0.4 + 0.6 + 0.8) / 4
    assert best.new == pytest.approx(0.725)  # (1.0 + 0.8 + 0.6 + 0.5) / 4
    assert best.delta == pytest.approx(0.225)
    assert means["scores.ifeval_worst"].delta == 0


def test_identical_versions_have_no_differences(registry: Registry) -> None:
    old = registry.write("same", table(OLD))
    new = registry.write("same", table(list(reversed(OLD))))
    diff = diff_versions(old, new)
    assert (diff.added.count, diff.removed.count, diff.changed.count, diff.unchanged) == (0, 0, 0, 4)
    assert diff.changed.sample == []


def test_sample_limits_examples_not_counts(registry: Registry) -> None:
    old = registry.write("many", pa.table({"id": [f"r{i:02d}" for i in range(10)], "x": list(range(10))}))
    new = registry.write("many", pa.table({"id": [f"r{i:02d}" for i in range(10)], "x": [-1] * 10}))
    diff = diff_versions(old, new, sample=3)
    assert diff.changed.count == 10
    assert diff.changed.sample == ["r00", "r01", "r02"]
    assert diff_versions(old, new, sample=0).changed.sample == []


def test_schema_changes_between_two_datasets(registry: Registry) -> None:
    old = registry.write(
        "left",
        pa.table(
            {
                "id": ["a", "b"],
                "source": ["s", "s"],
                "stage": pa.array([1, 2], pa.int32()),
                "tag": ["x", "y"],
                "reward": [0.5, 1.0],
            }
        ),
    )
    new = registry.write(
        "right",
        pa.table(
            {
                "id": ["a", "b"],
                "stage": pa.array([1, 3], pa.int64()),  # widened: still compared, b changed
                "tag": pa.array([1, 2], pa.int64()),  # "x" is no number: not compared
                "reward": [0.5, 1.0],
                "pass_rate": [0.0, 1.0],
            }
        ),
    )
    diff = diff_versions(old, new)
    assert [(c.name, c.old_type, c.new_type) for c in diff.schema.added] == [("pass_rate", None, "double")]
    assert [(c.name, c.old_type, c.new_type) for c in diff.schema.removed] == [("source", "string", None)]
    assert [(c.name, c.old_type, c.new_type) for c in diff.schema.retyped] == [
        ("stage", "int32", "int64"),
        ("tag", "string", "int64"),
    ]
    assert diff.uncompared_columns == ["tag"]
    assert diff.compared_columns == ["stage", "reward"]
    assert (diff.changed.count, diff.changed.sample, diff.unchanged) == (1, ["b"], 1)
    means = {d.name: (d.old, d.new) for d in diff.means}
    assert means == {"reward": (0.75, 0.75), "pass_rate": (None, 0.5)}


def test_dataset_without_id_or_with_repeated_ids_is_refused(registry: Registry) -> None:
    with_id = registry.write("with-id", pa.table({"id": ["a"], "x": [1]}))
    no_id = registry.write("no-id", pa.table({"x": [1]}))
    with pytest.raises(RegistryError, match=r"diff needs an `id` column.*no-id@1 has none"):
        diff_versions(with_id, no_id)
    with pytest.raises(RegistryError, match="diff needs an `id` column"):
        diff_versions(no_id, with_id)
    repeated = registry.write("repeated", pa.table({"id": ["a", "b", "a"], "x": [1, 2, 3]}))
    with pytest.raises(RegistryError, match=r"unique ids; repeated@1 repeats 1 ids, e.g. 'a'"):
        diff_versions(with_id, repeated)


def test_render_diff_shows_counts_ids_schema_and_deltas(registry: Registry, diff: DatasetDiff) -> None:
    console = Console(record=True, width=140, color_system=None)
    for renderable in render_diff(diff):
        console.print(renderable)
    text = console.export_text()
    assert "chat@1 -> chat@2" in text
    assert "schema: unchanged" in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") >= 3}
    assert "1" in lines["added"] and "e" in lines["added"]
    assert "b, c" in lines["changed"]
    assert "+0.225" in lines["mean: scores.ifeval_best"]
    assert "+1" in lines["nulls: language"]
