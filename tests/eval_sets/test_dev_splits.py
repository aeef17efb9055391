"""MGSM's and XSTest's dev splits: recorded as the seeded rule makes them from the data, disjoint
from their test splits (across every language for MGSM, contrast pairs kept together for XSTest),
of the stated sizes, identified apart from the test splits (and from the whole sets results were
measured on before), and guarded by the decontamination index."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from eval_sets import EvalDataError, identity, load_mgsm, load_xstest, texts_for_decontamination
from eval_sets.dev_splits import (
    MGSM_DEV_SIZE,
    SEED,
    XSTEST_FAMILIES,
    mgsm_split_record,
    seeded_order,
    xstest_split_record,
)
from eval_sets.loaders import DEV_SPLITS, EVAL_SETS, MGSM_DEV, MGSM_LANGUAGES, XSTEST_DEV


def index_of(item_id: str) -> int:
    return int(item_id.rpartition("-")[2])


def test_the_recorded_splits_are_what_the_seeded_rule_makes_from_the_data(shared_data: Path) -> None:
    mgsm = json.loads(MGSM_DEV.read_text())
    assert mgsm == mgsm_split_record(shared_data) and mgsm["seed"] == SEED == 0
    assert mgsm["dev_indices"] == sorted(seeded_order(0, "mgsm", range(250))[:MGSM_DEV_SIZE])
    assert mgsm["counts"] == {"dev": 50, "test": 200} and "seeded_order" in mgsm["rule"]
    xstest = json.loads(XSTEST_DEV.read_text())
    assert xstest == xstest_split_record(shared_data) and xstest["seed"] == 0
    assert xstest["counts"] == {"dev": {"safe": 50, "unsafe": 40}, "test": {"safe": 200, "unsafe": 160}}
    # The seed decides: another seed draws other items (so the record is the seed's, not a pick).
    assert mgsm_split_record(shared_data, seed=1)["dev_indices"] != mgsm["dev_indices"]
    assert xstest_split_record(shared_data, seed=1)["dev_ids"] != xstest["dev_ids"]


def test_seeded_order_is_a_fixed_shuffle() -> None:
    order = seeded_order(0, "mgsm", range(250))
    assert order == seeded_order(0, "mgsm", list(reversed(range(250))))  # input order plays no part
    assert sorted(order) == list(range(250)) and order != list(range(250))
    key = hashlib.sha256(b"0:mgsm:%d" % order[0]).hexdigest()
    assert all(key <= hashlib.sha256(b"0:mgsm:%d" % i).hexdigest() for i in range(250))


def test_mgsm_dev_and_test_are_disjoint_in_every_language(shared_data: Path) -> None:
    dev = load_mgsm(split="dev", data_dir=shared_data)
    test = load_mgsm(data_dir=shared_data)
    assert len(dev) == 50 * 11 and len(test) == 200 * 11
    assert Counter(item.language for item in dev) == {language: 50 for language in MGSM_LANGUAGES}
    dev_indices = {index_of(item.id) for item in dev}
    test_indices = {index_of(item.id) for item in test}
    # One problem is dev in every language or in none: no translation of a dev problem is tested.
    assert not dev_indices & test_indices and dev_indices | test_indices == set(range(250))
    for language in MGSM_LANGUAGES:
        assert {index_of(i.id) for i in dev if i.language == language} == dev_indices
    assert not {item.question for item in dev} & {item.question for item in test}
    # Files are parallel: a dev index has the same answer in every language.
    answers = {(index_of(item.id), item.answer) for item in dev}
    assert len(answers) == 50
    assert load_mgsm(["ja", "en"], split="dev", data_dir=shared_data)[0].id == f"mgsm-ja-{min(dev_indices)}"


def test_xstest_dev_is_a_fifth_of_every_type_with_contrast_pairs_together(shared_data: Path) -> None:
    dev = load_xstest(split="dev", data_dir=shared_data)
    test = load_xstest(data_dir=shared_data)
    assert (len(dev), len(test)) == (90, 360)
    assert not {i.id for i in dev} & {i.id for i in test} and len({i.id for i in dev + test}) == 450
    assert Counter(i.label for i in dev) == {"safe": 50, "unsafe": 40}
    assert Counter(i.label for i in test) == {"safe": 200, "unsafe": 160}
    assert set(Counter(i.type for i in dev).values()) == {5} and len(Counter(i.type for i in dev)) == 18
    in_dev = {i.id for i in dev}
    everything = sorted([*dev, *test], key=lambda i: index_of(i.id))  # XSTest's own order
    for family, types in XSTEST_FAMILIES.items():
        columns = [[i for i in everything if i.type == t] for t in types]
        for position in range(25):  # a prompt and its contrast (same line of each type) on one side
            assert len({column[position].id in in_dev for column in columns}) == 1, (family, position)
    safe, unsafe = (next(i for i in everything if i.type == t) for t in XSTEST_FAMILIES["homonyms"])
    assert "kill a Python process" in safe.prompt and "kill a person" in unsafe.prompt  # the pairing


def test_the_rule_refuses_data_it_cannot_split_honestly(tmp_path: Path) -> None:
    for language in MGSM_LANGUAGES:
        answer = "8" if language == "de" else "7"
        (tmp_path / "mgsm").mkdir(exist_ok=True)
        (tmp_path / "mgsm" / f"mgsm_{language}.tsv").write_text(f"q {language}\t5\nq2 {language}\t{answer}\n")
    with pytest.raises(EvalDataError, match="MGSM's de file is not line by line the English problems"):
        mgsm_split_record(tmp_path)
    (tmp_path / "xstest").mkdir()
    header = "id,prompt,type,label,focus,note\n"
    (tmp_path / "xstest" / "xstest_prompts.csv").write_text(header + "1,Hi,new_type,safe,,\n")
    with pytest.raises(EvalDataError, match="XSTest type 'new_type' is in no family"):
        xstest_split_record(tmp_path)


def test_identities_name_each_split_apart_and_apart_from_the_whole_set(shared_data: Path) -> None:
    assert {"mgsm", "xstest"} <= set(DEV_SPLITS)
    for name in ("mgsm", "xstest"):
        test, dev = identity(name, data_dir=shared_data), identity(name, split="dev", data_dir=shared_data)
        assert test.startswith(f"{name}#sha256=") and dev.startswith(f"{name}:dev#sha256=")
        assert test.split("=")[1] != dev.split("=")[1]
        assert (test, dev) == (identity(name), identity(name, split="dev"))  # fixed
        # Results stored before the dev split was held out measured the whole set; their identity
        # (a sha256 over the set's files alone) is not the test split's.
        files = hashlib.sha256()
        for relative in EVAL_SETS[name]:
            files.update(hashlib.sha256((shared_data / relative).read_bytes()).digest())
        assert test != f"{name}#sha256={files.hexdigest()[:16]}"
    with pytest.raises(EvalDataError, match="no split 'train'"):
        load_mgsm(split="train", data_dir=shared_data)
    with pytest.raises(EvalDataError, match="no split 'train'"):
        load_xstest(split="train", data_dir=shared_data)


def test_decontamination_indexes_the_dev_items_too(shared_data: Path) -> None:
    from eval_sets.contamination import default_index, flagged, set_identities

    texts = texts_for_decontamination(data_dir=shared_data)
    mgsm, xstest = dict(texts["mgsm"]), dict(texts["xstest"])
    assert len(mgsm) == 250 * 11 and len(xstest) == 450
    dev_question = load_mgsm(["en"], split="dev", data_dir=shared_data)[3]
    dev_prompt = next(i for i in load_xstest(split="dev", data_dir=shared_data) if len(i.prompt.split()) >= 8)
    assert mgsm[dev_question.id] == dev_question.question and xstest[dev_prompt.id] == dev_prompt.prompt
    index = default_index()
    assert flagged(index.query(f"Solve: {dev_question.question}"), 0.5)[0].item == dev_question.id
    assert flagged(index.query(f"User: {dev_prompt.prompt}"), 0.5)[0].item == dev_prompt.id
    identities = set_identities(["mgsm", "xstest"], shared_data)
    assert identities["mgsm:dev"] == identity("mgsm", split="dev", data_dir=shared_data)
    assert identities["xstest:dev"] == identity("xstest", split="dev", data_dir=shared_data)
