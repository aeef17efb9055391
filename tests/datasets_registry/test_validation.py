"""Kind checks on write: a bad row is named with its column, and nothing is committed."""

from pathlib import Path

import pyarrow as pa
import pytest

from datasets_registry import Registry, RegistryError
from datasets_registry.kinds import MESSAGES_TYPE

USER = {"role": "user", "content": "q"}
ASSISTANT = {"role": "assistant", "content": "a"}


def conversations(*turn_lists: list[dict]) -> pa.Array:
    return pa.array(list(turn_lists), MESSAGES_TYPE)


def pairs(**overrides: object) -> pa.Table:
    columns: dict[str, object] = {
        "id": ["p0", "p1", "p2"],
        "prompt": conversations([USER], [USER], [USER]),
        "chosen": conversations([ASSISTANT], [ASSISTANT], [ASSISTANT]),
        "rejected": conversations([ASSISTANT], [ASSISTANT], [ASSISTANT]),
        "label": [0.999, 0.5, 1.0],
        "stage": [1, 2, 2],
    }
    columns.update(overrides)
    return pa.table(columns)


GOOD = {
    "sft": pa.table({"id": ["a", "b"], "messages": conversations([USER, ASSISTANT], [ASSISTANT])}),
    "preference": pairs().drop_columns(["label", "stage"]),
    "rm_pairs": pairs(),
    "prompts": pa.table({"prompt": ["write a poem", "add 2 and 3"]}),
    "code": pa.table(
        {
            "prompt": ["p"],
            "language": ["python"],
            "tests": ["assert f() == 1"],
            "solution": ["def f(): return 1"],
            "verdict": ["pass"],
            "pass_rate": [1.0],
        }
    ),
}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_rows_that_fit_their_kind_are_written(registry: Registry, kind: str) -> None:
    assert (
        registry.write(f"ok-{kind.replace('_', '-')}", GOOD[kind], kind=kind).num_rows == GOOD[kind].num_rows
    )


LAST_TURN = r"row 1 \(id 'b'\), column 'messages' does not end with an assistant turn"
LABEL = r"row 2 \(id 'p2'\), column 'label' is 1.5, outside \[0.0, 1.0\]"
BAD = {
    "sft-last-turn": (
        "sft",
        pa.table({"id": ["a", "b"], "messages": conversations([USER, ASSISTANT], [USER])}),
        LAST_TURN,
    ),
    "sft-empty": (
        "sft",
        pa.table({"messages": conversations([USER, ASSISTANT], [])}),
        r"row 1, column 'messages' is an empty conversation",
    ),
    "sft-role": (
        "sft",
        pa.table({"messages": conversations([{"role": "robot", "content": "x"}, ASSISTANT])}),
        r"row 0, column 'messages' has a role outside",
    ),
    "sft-type": ("sft", pa.table({"messages": ["just text"]}), r"column 'messages' has type string"),
    "pref-null": (
        "preference",
        pairs(chosen=pa.array([[ASSISTANT], None, [ASSISTANT]], MESSAGES_TYPE)),
        r"row 1 \(id 'p1'\), column 'chosen' is null",
    ),
    "rm-label": ("rm_pairs", pairs(label=[0.5, 0.2, 1.5]), LABEL),
    "rm-stage": (
        "rm_pairs",
        pairs(stage=[1, 3, 2]),
        r"row 1 \(id 'p1'\), column 'stage' is 3; expected 1 or 2",
    ),
    "code-rate": (
        "code",
        GOOD["code"].set_column(5, "pass_rate", pa.array([-0.5])),
        r"column 'pass_rate' is -0.5",
    ),
    "missing-column": ("rm_pairs", pairs().drop_columns(["stage"]), r"lacks column\(s\) stage"),
    "rm-stage-type": (
        "rm_pairs",
        pairs(stage=["1", "2", "2"]),
        r"column 'stage' has type string; expected an integer",
    ),
    "rm-label-nan": (
        "rm_pairs",
        pairs(label=[0.5, float("nan"), 1.0]),
        r"row 1 \(id 'p1'\), column 'label' is nan, outside \[0.0, 1.0\]",
    ),
    "code-rate-nan": (
        "code",
        GOOD["code"].set_column(5, "pass_rate", pa.array([float("nan")])),
        r"column 'pass_rate' is nan",
    ),
    "code-tests-type": (
        "code",
        GOOD["code"].set_column(2, "tests", pa.array([["assert f() == 1"]])),
        r"column 'tests' has type list<item: string>; expected a string",
    ),
    "code-tests-null": (
        "code",
        GOOD["code"].set_column(2, "tests", pa.array([None], pa.string())),
        r"row 0, column 'tests' is null",
    ),
    "code-solution-type": (
        "code",
        GOOD["code"].set_column(3, "solution", pa.array([1])),
        r"column 'solution' has type int64; expected a string",
    ),
    "code-verdict-type": (
        "code",
        GOOD["code"].set_column(4, "verdict", pa.array([True])),
        r"column 'verdict' has type bool; expected a string",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_row_is_named_and_nothing_is_committed(registry: Registry, case: str) -> None:
    kind, table, message = BAD[case]
    registry.write("target", GOOD[kind], kind=kind)
    with pytest.raises(RegistryError, match=message):
        registry.write("target", table, kind=kind)
    assert [v.version for v in registry.versions("target")] == [1]
    assert registry.open("target").to_arrow().equals(GOOD[kind])


def test_code_rows_may_lack_a_solution_and_a_verdict(registry: Registry) -> None:
    table = GOOD["code"].set_column(3, "solution", pa.array([None], pa.string()))
    table = table.set_column(4, "verdict", pa.array([None], pa.string()))
    assert registry.write("code", table, kind="code").num_rows == 1


def test_a_ray_write_refused_by_a_late_block_leaves_no_files(registry: Registry, ray_local: None) -> None:
    import ray.data

    registry.write("ray-pairs", pairs(), kind="rm_pairs")
    data_dir = Path(registry.dataset_uri("ray-pairs")) / "data"
    files_before = set(data_dir.iterdir())
    blocks = [pairs(), pairs(), pairs(label=[0.5, 0.2, 1.5])]  # two good blocks, then a bad one
    with pytest.raises(RegistryError, match=r"column 'label' is 1.5"):
        registry.write("ray-pairs", ray.data.from_arrow(blocks), kind="rm_pairs", mode="append")
    assert set(data_dir.iterdir()) == files_before
    assert [v.version for v in registry.versions("ray-pairs")] == [1]


def test_ray_write_is_checked_too(registry: Registry, ray_local: None) -> None:
    import ray.data

    bad = pairs(label=[0.5, 0.2, 1.5])
    with pytest.raises(RegistryError, match=r"\(id 'p2'\), column 'label' is 1.5"):
        registry.write("ray-pairs", ray.data.from_arrow(bad), kind="rm_pairs")
    assert registry.names() == []
