"""Input handling: validation, truncation with counts, and the hh-rlhf conversion and split."""

import gzip
import json
from pathlib import Path

import pytest
from rm_fixtures import pair_rows, synthetic_pairs

from reward_model.config import RMConfigError
from reward_model.data import hh_rlhf_pair, hh_rlhf_split, split_dialogue, tokenize_pairs, validate_pairs

GOOD = pair_rows(synthetic_pairs(1))[0]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"chosen": [{"role": "assistant", "content": "  "}]}, "empty chosen"),
        ({"rejected": []}, "empty rejected"),
        ({"label": 1.5}, "bad label"),
        ({"label": -0.1}, "bad label"),
        ({"label": float("nan")}, "bad label"),
        ({"stage": 3}, "bad stage"),
    ],
)
def test_bad_pairs_are_dropped_with_a_count_or_fail_naming_the_row(change: dict, reason: str) -> None:
    rows = [GOOD, GOOD | change, GOOD]
    pairs, dropped = validate_pairs(rows, source="ds@1")
    assert len(pairs) == 2 and dropped == {reason: 1}
    with pytest.raises(RMConfigError, match=r"ds@1: row 1: "):
        validate_pairs(rows, source="ds@1", invalid="error")


def test_missing_label_is_gold_and_tied_gets_the_tie_label() -> None:
    pairs, _ = validate_pairs([GOOD | {"label": None}, GOOD | {"label": None, "tied": True}], source="x")
    assert [p.label for p in pairs] == [0.999, 0.5]


def test_long_pairs_lose_the_start_of_their_prompt_with_a_count(tiny_tokenizer) -> None:  # noqa: ANN001
    long_prompt = [{"role": "user", "content": "Write a short story about a lighthouse keeper. " * 40}]
    pair = synthetic_pairs(1)[0]
    pair.prompt = long_prompt
    short = synthetic_pairs(1)[0]
    tokenized, counts = tokenize_pairs(tiny_tokenizer, [pair, short], max_length=64)
    assert counts.truncated == 1 and counts.kept == 2 and not counts.dropped
    assert all(len(p.chosen) <= 64 and len(p.rejected) <= 64 for p in tokenized)
    # the response survives whole: the cut sample ends with the same tokens as the full one
    full, _ = tokenize_pairs(tiny_tokenizer, [pair], max_length=10_000)
    assert full[0].chosen[-8:] == tokenized[0].chosen[-8:] and len(full[0].chosen) > 64
    dropped, counts = tokenize_pairs(tiny_tokenizer, [pair, short], max_length=64, truncation="drop")
    assert len(dropped) == 1 and counts.dropped == {"too long": 1} and counts.truncated == 0


def test_a_response_longer_than_the_maximum_is_dropped(tiny_tokenizer) -> None:  # noqa: ANN001
    pair = synthetic_pairs(1)[0]
    pair.chosen = [{"role": "assistant", "content": "My answer is yes. " * 50}]
    tokenized, counts = tokenize_pairs(tiny_tokenizer, [pair], max_length=32)
    assert not tokenized and counts.dropped == {"too long": 1}


def test_hh_dialogue_is_split_into_turns() -> None:
    dialogue = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How to bake?\n\nAssistant:"
    record = {
        "chosen": dialogue + " Use an oven.",
        "rejected": dialogue + " No idea.",
    }
    pair = hh_rlhf_pair(record)
    assert pair["prompt"] == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How to bake?"},
    ]
    assert pair["chosen"] == [{"role": "assistant", "content": "Use an oven."}]
    assert pair["rejected"] == [{"role": "assistant", "content": "No idea."}]
    assert split_dialogue("\n\nHuman: a\nb") == [{"role": "user", "content": "a\nb"}]


def test_hh_response_containing_a_turn_tag_keeps_the_shared_prompt() -> None:
    record = {
        "chosen": "\n\nHuman: Q\n\nAssistant: A1\n\nAssistant: A2",
        "rejected": "\n\nHuman: Q\n\nAssistant: B",
    }
    pair = hh_rlhf_pair(record)
    assert pair["prompt"] == [{"role": "user", "content": "Q"}]
    assert pair["chosen"][0]["content"] == "A1\n\nAssistant: A2"


def test_hh_rlhf_split_on_the_real_data(shared_data: Path) -> None:
    path = shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    records = [json.loads(line) for line in gzip.open(path, "rt")]
    train, test = hh_rlhf_split(records)
    assert (len(train), len(test)) == (1849, 463) and not set(train) & set(test)
    pairs = [hh_rlhf_pair(records[i]) for i in train[:50]]
    assert all(p["prompt"][-1]["role"] == "user" and p["chosen"][0]["content"] for p in pairs)
    valid, dropped = validate_pairs(
        [p | {"label": 0.999, "stage": 2} for p in map(hh_rlhf_pair, records)], source="hh"
    )
    assert len(valid) + sum(dropped.values()) == 2312 and sum(dropped.values()) < 10


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reward_model"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path: Path) -> None:
    from reward_model.config import load_rm_config

    config = load_rm_config(path)
    assert config.datasets and all("@" in ref for ref in config.datasets)
