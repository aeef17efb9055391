"""The decontamination index: normalisation, overlaps, what is caught on the real evaluation sets
(HumanEval, MGSM in ja/zh/th, held-out vs training m-IFEval, short XSTest prompts), and whole
registered datasets (`check_dataset`, `refuse_above`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from timing import bound

from eval_sets import load_humaneval, load_ifeval, load_mgsm, load_xstest
from eval_sets.contamination import (
    ContaminationError,
    ContaminationIndex,
    check_dataset,
    default_index,
    flagged,
    normalize,
    text_columns,
    units,
)
from eval_sets.loaders import heldout_keys

UNRELATED = (
    "The quarterly report shows that our warehouse in Rotterdam shipped more pallets of tulip "
    "bulbs this spring than in any previous season, mostly to garden centres in the north."
)


@pytest.fixture
def index(shared_data: Path) -> ContaminationIndex:
    return default_index()  # built once per process


def test_normalisation_ignores_case_width_and_punctuation() -> None:
    assert normalize("Ｈｅｌｌｏ, WORLD!  It's (fine).").split() == ["hello", "world", "it", "s", "fine"]
    assert normalize("def f(a_b): return a+b # ok").split() == "def f a b return a b ok".split()
    words, cjk, sea = units("Janet's ducks: 16 eggs! ジャネットの卵。 ไข่เป็ด 16 ฟอง")
    assert words == ["janet", "s", "ducks", "16", "eggs", "16"]
    assert "".join(cjk) == "ジャネットの卵"  # a script without spaces is read as characters
    assert "".join(sea) == "ไข่เป็ดฟอง"


def test_overlap_is_shared_ngrams_over_the_items_and_over_the_texts() -> None:
    item = " ".join(f"w{i}" for i in range(17))  # 10 distinct 8-grams
    index = ContaminationIndex({"toy": [("toy-1", item)]})
    (match,) = index.query("intro " + " ".join(f"W{i}," for i in range(12)))  # its first 5 8-grams
    assert (match.set, match.item, match.shared, match.overlap) == ("toy", "toy-1", 5, 0.5)
    assert match.text_overlap == round(5 / 6, 4)  # the text has 6 windows of 8 words
    assert flagged([match], 0.5) == [match] and flagged([match], 0.51) == []
    assert index.query("w1 w2 w3 w4 w5 w6 w7") == []  # 7 words share no 8-gram


def test_a_row_copying_a_humaneval_prompt_is_caught_and_an_unrelated_one_is_not(
    index: ContaminationIndex,
) -> None:
    problem = load_humaneval()[17]
    row = f"Please complete this function.\n\n{problem.prompt}\n"
    hits = flagged(index.query(row), 0.5)
    assert [(m.set, m.item) for m in hits[:1]] == [("humaneval", problem.id)]
    assert index.query(UNRELATED) == []


@pytest.mark.parametrize("language", ["ja", "zh", "th"])
def test_a_row_embedding_an_mgsm_question_in_a_spaceless_script_is_caught(
    index: ContaminationIndex, language: str
) -> None:
    question = load_mgsm([language])[42]
    row = ["Answer in English, step by step.", f"Problem: {question.question}\nThanks!"]  # two texts of a row
    hits = flagged(index.query(row), 0.5)
    assert hits and hits[0].item == question.id and hits[0].overlap == 1.0


def test_heldout_ifeval_is_flagged_and_the_training_part_is_not(
    index: ContaminationIndex, shared_data: Path
) -> None:
    heldout = load_ifeval(["en"])[0]
    assert flagged(index.query(heldout.prompt), 0.5)[0].item == heldout.id
    dev = load_ifeval(["en"], split="dev")[0]
    assert flagged(index.query(dev.prompt), 0.5)[0].item == dev.id  # the dev split is guarded too
    held, dev_keys = heldout_keys(), heldout_keys("dev")
    train = []
    for language in ("en", "es", "fr", "ja"):
        path = shared_data / "ifeval" / f"m-ifeval_{language}_input_data.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        excluded = held[language] | dev_keys[language]
        train += [(f"{language}-{r['key']}", r["prompt"]) for r in rows if r["key"] not in excluded]
    results = dict(zip([k for k, _ in train], index.query_rows([[p] for _, p in train]), strict=True))
    assert results["en-1000"] == []  # a training prompt shares nothing with the held-out split
    flagged_train = [key for key, matches in results.items() if flagged(matches, 0.5)]
    # IFEval's prompts share instruction templates ("First repeat the request word for word..."),
    # so a few short training prompts reach half of a held-out one (10 of 638 before the dev
    # split was set aside);
    # no training prompt is a held-out prompt.
    assert len(flagged_train) <= 0.03 * len(train)
    assert all(m.overlap < 1.0 for matches in results.values() for m in matches)


def test_a_short_xstest_prompt_copied_verbatim_is_caught(index: ContaminationIndex) -> None:
    short = next(item for item in load_xstest() if len(item.prompt.split()) == 6)
    hits = flagged(index.query(f"User asked: {short.prompt} Assistant: sure."), 0.5)
    assert hits[0].item == short.id and hits[0].overlap == 1.0


def test_building_every_set_takes_seconds_and_checking_is_fast(shared_data: Path) -> None:
    fresh = ContaminationIndex.build()
    assert fresh.stats.build_s < bound(5.0)
    assert set(fresh.stats.items) == {"ifeval", "humaneval", "mgsm", "xstest", "leval"}
    rows = [[f"{UNRELATED} Row {i} of the batch."] for i in range(5000)]
    results = fresh.query_rows(rows)
    assert all(r == [] for r in results)


def test_text_columns_are_strings_and_conversations_but_not_ids() -> None:
    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema(
        [("id", pa.string()), ("prompt", pa.string()), ("n", pa.int64()), ("chosen", messages),
         ("tags", pa.list_(pa.string())), ("_error", pa.string())]
    )  # fmt: skip
    assert text_columns(schema) == ["prompt", "chosen"]


def test_check_dataset_reports_and_refuses_above_a_threshold(index: ContaminationIndex, registry) -> None:  # noqa: ANN001
    problem = load_humaneval()[3]
    question = load_mgsm(["zh"])[7]
    rows = [
        {"id": "clean-1", "prompt": UNRELATED, "messages": [{"role": "user", "content": "hi"}]},
        {"id": "copied", "prompt": "Solve it.", "messages": [{"role": "user", "content": problem.prompt}]},
        {"id": "mgsm", "prompt": question.question, "messages": []},
        {"id": "clean-2", "prompt": "Tell me about tulips.", "messages": None},
    ]
    version = registry.write("mix", pa.Table.from_pylist(rows), kind="generic")
    report = check_dataset(version, 0.5)
    assert (report.rows, report.flagged_rows, report.fraction) == (4, 2, 0.5)
    assert report.by_set["humaneval"] == 1 and report.by_set["mgsm"] == 1 and report.by_set["ifeval"] == 0
    assert [(e.row, e.item) for e in report.examples] == [("copied", problem.id), ("mgsm", question.id)]
    assert report.columns == ["prompt", "messages"]
    assert report.eval_sets["humaneval"].startswith("humaneval#sha256=")
    report.refuse_above(0.5)  # exactly at the threshold is allowed
    with pytest.raises(ContaminationError, match=r"mix@1: 2 of 4 rows \(50\.0%\).*humaneval"):
        report.refuse_above(0.1)
