"""Dataset stats: exact counts, nulls, languages, histograms, percentiles, and what is read."""

import lance
import pyarrow as pa
import pytest
from rich.console import Console

from assay.cli.render import render_stats
from datasets_registry import Registry
from datasets_registry.kinds import MESSAGES_TYPE
from datasets_registry.stats import DatasetStats, compute_stats

SCORES_TYPE = pa.struct([("ifeval_best", pa.float64()), ("n", pa.int64()), ("judge", pa.string())])


def conversation(*contents: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"]
    return [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]


def sample_table() -> pa.Table:
    """Five rows whose figures below are worked out by hand."""
    return pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "language": ["en", "fr", None, "en", "de"],
            "source": ["s1", "s1", "s2", "s2", "s2"],
            # content characters per row: 5, 5 (é is one character, two bytes), 0, null, 60
            "messages": pa.array(
                [
                    conversation("ab", "cde"),
                    conversation("héllo"),
                    [],
                    None,
                    conversation("x" * 10, "y" * 20, "z" * 30),
                ],
                MESSAGES_TYPE,
            ),
            "scores": pa.array(
                [
                    {"ifeval_best": 0.0, "n": 1, "judge": "x"},
                    {"ifeval_best": 0.25, "n": 2, "judge": "x"},
                    {"ifeval_best": None, "n": 3, "judge": "x"},
                    {"ifeval_best": 0.95, "n": 4, "judge": "x"},
                    {"ifeval_best": 1.0, "n": 5, "judge": "x"},
                ],
                SCORES_TYPE,
            ),
            "reward": pa.array([1.0, float("nan"), 3.0, None, 2.0]),
            "judge_score": pa.array([7, 7, 7, 7, 7], pa.int32()),
            "stage": pa.array([1, 2, 1, 2, 1], pa.int8()),
            "note": ["", "héllo", None, "abcd", "xyz"],
        }
    )


@pytest.fixture
def stats(registry: Registry) -> DatasetStats:
    version = registry.write("demo-sft", sample_table())  # generic: sft refuses the null conversation
    return compute_stats(version, bins=4)


def test_row_count_and_per_column_types_and_nulls(stats: DatasetStats) -> None:
    assert stats.ref == "demo-sft@1"
    assert stats.row_count == 5
    by_name = {c.name: c for c in stats.columns}
    assert list(by_name) == sample_table().schema.names
    assert (by_name["language"].non_null, by_name["language"].nulls) == (4, 1)
    assert (by_name["messages"].non_null, by_name["messages"].nulls) == (4, 1)
    assert (by_name["reward"].non_null, by_name["reward"].nulls) == (4, 1)  # NaN is a value
    assert (by_name["scores"].non_null, by_name["scores"].nulls) == (5, 0)
    assert (by_name["id"].non_null, by_name["id"].nulls) == (5, 0)
    assert by_name["stage"].type == "int8"
    assert by_name["messages"].type == str(MESSAGES_TYPE)


def test_language_distribution_counts_values_most_frequent_first(stats: DatasetStats) -> None:
    assert stats.languages == {"en": 2, "de": 1, "fr": 1}
    assert list(stats.languages) == ["en", "de", "fr"]  # ties by code


def test_histograms_cover_score_values_only_with_known_bins(stats: DatasetStats) -> None:
    hists = {h.name: h for h in stats.histograms}
    # numeric fields of `scores` and numeric reward/*_score columns; not stage, not a string field
    assert set(hists) == {"scores.ifeval_best", "scores.n", "reward", "judge_score"}

    best = hists["scores.ifeval_best"]
    assert best.edges == [0.0, 0.25, 0.5, 0.75, 1.0]
    # 0.0 -> bin 0; 0.25 sits on an edge and goes right (bin 1); 0.95 and the maximum 1.0 -> bin 3
    assert best.counts == [1, 1, 0, 2]
    assert sum(best.counts) == best.count == 4
    assert best.nulls == 1 and best.non_finite == 0
    assert best.mean == pytest.approx(0.55)

    n = hists["scores.n"]
    assert n.edges == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert n.counts == [1, 1, 1, 2]
    assert n.mean == 3.0

    reward = hists["reward"]  # 1.0, NaN, 3.0, null, 2.0
    assert reward.edges == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert reward.counts == [1, 0, 1, 1]
    assert (reward.count, reward.nulls, reward.non_finite) == (3, 1, 1)
    assert reward.mean == 2.0

    # All 7: one bin, whatever `bins` says. The one departure from np.histogram, which would
    # widen the range to [6.5, 7.5] and spread it over `bins` bins.
    constant = hists["judge_score"]
    assert constant.edges == [7.0, 7.0] and constant.counts == [5]


def test_percentiles_of_string_and_message_lengths(stats: DatasetStats) -> None:
    lengths = {(s.column, s.measure): s for s in stats.lengths}
    assert set(lengths) == {
        ("id", "chars"),
        ("language", "chars"),
        ("source", "chars"),
        ("note", "chars"),
        ("messages", "chars"),
        ("messages", "turns"),
    }
    # note: "", "héllo", null, "abcd", "xyz" -> 0, 5, 4, 3 characters (sorted 0 3 4 5)
    note = lengths["note", "chars"]
    assert note.count == 4
    assert (note.p50, note.p90, note.p99, note.max, note.mean) == pytest.approx((3.5, 4.7, 4.97, 5, 3.0))
    # messages: 5, 5, 0, 60 characters (null row left out); linear interpolation on 0 5 5 60
    chars = lengths["messages", "chars"]
    assert chars.count == 4
    assert (chars.p50, chars.p90, chars.p99, chars.max, chars.mean) == pytest.approx(
        (5.0, 43.5, 58.35, 60, 17.5)
    )
    turns = lengths["messages", "turns"]  # 2, 1, 0, 3 turns
    assert (turns.p50, turns.p90, turns.p99, turns.max, turns.mean) == pytest.approx((1.5, 2.7, 2.97, 3, 1.5))
    assert lengths["id", "chars"].max == 1


def test_stats_reads_one_column_at_a_time(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    version = registry.write("demo-sft", sample_table())  # generic: sft refuses the null conversation
    projections: list[list[str] | None] = []
    real_to_table = lance.LanceDataset.to_table

    def spy(self: lance.LanceDataset, *args: object, **kwargs: object) -> pa.Table:
        projections.append(kwargs.get("columns"))  # type: ignore[arg-type]
        return real_to_table(self, *args, **kwargs)

    monkeypatch.setattr(lance.LanceDataset, "to_table", spy)
    compute_stats(version)
    assert projections, "stats read nothing through Lance"
    assert all(p is not None and len(p) == 1 for p in projections), projections
    assert sorted(p[0] for p in projections) == sorted(sample_table().schema.names)  # type: ignore[index]


def test_dataset_without_language_or_scores_and_empty_dataset(registry: Registry) -> None:
    plain = compute_stats(registry.write("plain", pa.table({"x": [1, 2, 3], "label": [0.0, 0.5, 1.0]})))
    assert plain.languages is None
    assert [h.name for h in plain.histograms] == ["label"]
    assert plain.histograms[0].counts == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]  # default 10 bins
    assert plain.lengths == []

    empty = compute_stats(
        registry.write(
            "empty", pa.table({"id": pa.array([], pa.string()), "score": pa.array([], pa.float64())})
        )
    )
    assert empty.row_count == 0
    assert empty.histograms[0].counts == [] and empty.histograms[0].mean is None
    assert empty.lengths[0].count == 0 and empty.lengths[0].p50 is None
    with pytest.raises(ValueError, match="bins"):
        compute_stats(registry.open("plain"), bins=0)


def test_render_draws_tables_and_one_block_bar_line_per_bin(stats: DatasetStats) -> None:
    console = Console(record=True, width=120, color_system=None)
    for renderable in render_stats(stats):
        console.print(renderable)
    text = console.export_text()
    assert "demo-sft@1: 5 rows" in text
    assert "null %" in text and "p99" in text and "58.35" in text
    best_lines = [
        line for line in text.splitlines() if line.lstrip("│ ").startswith(("[0,", "[0.25", "[0.5", "[0.75"))
    ]
    assert len(best_lines) == 4
    assert best_lines[-1].rstrip(" │").endswith(" 2") and "█" * 40 in best_lines[-1]  # the tallest bin
    assert "█" * 20 in best_lines[0] and "█" * 21 not in best_lines[0]  # half the tallest
    assert not any(ch in best_lines[2] for ch in "█▏▎▍▌▋▊▉")  # the empty bin has no bar
