"""Every TRL dataset type and format imports into its kind and exports back: import → export →
`datasets.load_dataset` gives the same rows. Imported rows get stable content ids, so `diff`
works on them."""

import json
from pathlib import Path

import pytest

from datasets_registry import Registry, RegistryError
from datasets_registry.transfer import export_version, import_file
from datasets_registry.trl_formats import TrlFormat, detect


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# Two rows per format, shaped as TRL's documentation shows them.
ROWS: dict[str, list[dict]] = {
    "language_modeling/standard": [{"text": "The sky is blue."}, {"text": "Grass is green."}],
    "language_modeling/conversational": [
        {"messages": user("What color is the sky?") + assistant("It is blue.")},
        {"messages": [{"role": "system", "content": "Be brief."}] + user("Grass?") + assistant("Green.")},
    ],
    "prompt_only/standard": [{"prompt": "The sky is"}, {"prompt": "Grass is"}],
    "prompt_only/conversational": [{"prompt": user("What color is the sky?")}, {"prompt": user("Grass?")}],
    "prompt_completion/standard": [
        {"prompt": "The sky is", "completion": " blue."},
        {"prompt": "Grass is", "completion": " green."},
    ],
    "prompt_completion/conversational": [
        {"prompt": user("What color is the sky?"), "completion": assistant("It is blue.")},
        {"prompt": user("Grass?"), "completion": assistant("Green.")},
    ],
    "preference/standard": [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
        {"prompt": "Grass is", "chosen": " green.", "rejected": " purple."},
    ],
    "preference/conversational": [
        {"prompt": user("Sky?"), "chosen": assistant("Blue."), "rejected": assistant("Green.")},
        {"prompt": user("Grass?"), "chosen": assistant("Green."), "rejected": assistant("Purple.")},
    ],
    "implicit_preference/standard": [
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "Grass is green.", "rejected": "Grass is purple."},
    ],
    "implicit_preference/conversational": [
        {"chosen": user("Sky?") + assistant("Blue."), "rejected": user("Sky?") + assistant("Green.")},
        {"chosen": user("Grass?") + assistant("Green."), "rejected": user("Grass?") + assistant("Red.")},
    ],
    "unpaired_preference/standard": [
        {"prompt": "The sky is", "completion": " blue.", "label": True},
        {"prompt": "The sky is", "completion": " green.", "label": False},
    ],
    "unpaired_preference/conversational": [
        {"prompt": user("Sky?"), "completion": assistant("Blue."), "label": True},
        {"prompt": user("Sky?"), "completion": assistant("Green."), "label": False},
    ],
    "stepwise_supervision/standard": [
        {"prompt": "Which is larger, 9.8 or 9.11?", "completions": ["9.8 = 9.80.", "So 9.11."],
         "labels": [True, False]},
        {"prompt": "2 + 2?", "completions": ["2 + 2 = 4."], "labels": [True]},
    ],
}  # fmt: skip


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_trl_format_round_trips_through_datasets(name: str, registry: Registry, tmp_path: Path) -> None:
    import datasets

    fmt = TrlFormat.parse(name)
    rows = ROWS[name]
    version = import_file(registry, write_jsonl(tmp_path / "in.jsonl", rows), "trl")
    assert version.kind == fmt.kind
    assert version.info.lineage.imported_format == f"trl:{name}"
    stored = version.to_arrow().to_pylist()
    assert all(len(row["id"]) == 16 for row in stored)
    if fmt.kind in ("sft", "preference", "prompts", "unpaired_preference", "stepwise"):
        assert isinstance(
            stored[0]["prompt" if fmt.kind != "sft" else "messages"], list
        )  # canonical messages
    export_version(version, "hf", tmp_path / "out")
    loaded = datasets.load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "cache"))
    assert sorted(loaded.to_list(), key=json.dumps) == sorted(rows, key=json.dumps)


def test_import_ids_are_stable_so_diff_works(registry: Registry, tmp_path: Path) -> None:
    rows = ROWS["preference/standard"]
    first = import_file(registry, write_jsonl(tmp_path / "a.jsonl", rows), "pairs")
    again = import_file(
        registry, write_jsonl(tmp_path / "b.jsonl", rows + [dict(rows[0], chosen=" azure.")]), "pairs"
    )
    assert set(first.to_arrow()["id"].to_pylist()) < set(again.to_arrow()["id"].to_pylist())
    diff = registry.diff(first.ref, again.ref)
    assert (diff.added.count, diff.removed.count, diff.changed.count) == (1, 0, 0)


def test_stored_rows_export_in_another_format_of_their_kind(registry: Registry, tmp_path: Path) -> None:
    version = import_file(registry, write_jsonl(tmp_path / "in.jsonl", ROWS["preference/standard"]), "pairs")
    export_version(version, "jsonl", tmp_path / "conv.jsonl", trl="preference/conversational")
    first = json.loads((tmp_path / "conv.jsonl").read_text().splitlines()[0])
    assert first == {
        "prompt": user("The sky is"),
        "chosen": assistant(" blue."),
        "rejected": assistant(" green."),
    }
    export_version(version, "jsonl", tmp_path / "stored.jsonl", trl="stored")
    assert "id" in json.loads((tmp_path / "stored.jsonl").read_text().splitlines()[0])
    with pytest.raises(
        RegistryError, match="kind 'preference'; TRL format prompt_only/standard is kind 'prompts'"
    ):
        export_version(version, "jsonl", tmp_path / "x.jsonl", trl="prompt_only/standard")


def test_bad_imports_name_the_problem(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not a TRL dataset format"):
        import_file(registry, write_jsonl(tmp_path / "x.jsonl", [{"question": "q"}]), "x")
    no_prompt = [{"chosen": "Blue sky.", "rejected": "Green grass."}]
    with pytest.raises(
        RegistryError, match="row 0: implicit-prompt preference whose chosen and rejected share"
    ):
        import_file(registry, write_jsonl(tmp_path / "y.jsonl", no_prompt), "y")
    with pytest.raises(RegistryError, match="rows are TRL preference/standard .* not kind 'sft'"):
        import_file(registry, write_jsonl(tmp_path / "z.jsonl", ROWS["preference/standard"]), "z", "sft")
    steps = [{"prompt": "p", "completions": ["a", "b"], "labels": [True]}]
    with pytest.raises(RegistryError, match="row 0 .* 'labels' has a different length"):
        import_file(registry, write_jsonl(tmp_path / "s.jsonl", steps), "s")
    assert registry.names() == []  # nothing was written


def test_native_kinds_are_not_mistaken_for_trl_formats() -> None:
    import pyarrow as pa

    rm_pairs = pa.table({"prompt": ["p"], "chosen": ["c"], "rejected": ["r"], "label": [1.0], "stage": [1]})
    assert detect(rm_pairs.schema) is None
    assert detect(
        pa.table({"messages": [user("q") + assistant("a")], "prompt": [user("q")]}).schema
    ) == TrlFormat("language_modeling", "conversational")
