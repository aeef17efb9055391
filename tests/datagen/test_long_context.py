"""Long-context QA: the `documents` kind and its text-folder import, token-aware fragments
(rows that cannot fit go to the dead letters with the numbers), grounded selection, and the
recipe on a tiny model."""

import json
from pathlib import Path

import pytest
import yaml

from datagen.job import prepare_job, run_job
from datagen.spec import load_spec
from datagen.stages import BuildContext
from datagen.stages.fragment import FragmentStage, FragmentStageSpec, load_tokenizer
from datagen.stages.qa_select import QASelectStage, QASelectStageSpec
from datasets_registry import Registry, RegistryError
from datasets_registry.transfer import import_file
from model_store import ModelStore

PARAGRAPH = "The lighthouse keeper rowed to the mainland every Tuesday to buy candles and bread.\n"


def test_documents_import_from_a_text_folder_and_jsonl(tmp_path: Path, registry: Registry) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "lighthouse.txt").write_text("\n\nThe Lighthouse\n\n" + PARAGRAPH * 3)
    (folder / "sea.txt").write_text("Songs of the Sea\n" + PARAGRAPH)
    (folder / "LICENSE").write_text("Public domain\n")
    version = import_file(registry, folder, "books")
    assert version.kind == "documents"
    rows = {r["id"]: r for r in version.to_arrow().to_pylist()}
    assert rows["lighthouse"]["title"] == "The Lighthouse" and rows["sea"]["license"] == "Public domain"
    assert rows["sea"]["source"] == "file:sea.txt" and rows["lighthouse"]["text"].endswith(PARAGRAPH)
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(
        json.dumps({"id": "d1", "title": "T", "text": PARAGRAPH, "source": "s", "license": "MIT"})
    )
    assert import_file(registry, jsonl, "docs", kind="documents").num_rows == 1
    jsonl.write_text(json.dumps({"id": "d1", "title": "T", "text": "  ", "source": "s", "license": "MIT"}))
    with pytest.raises(RegistryError, match="empty document"):
        import_file(registry, jsonl, "docs", kind="documents")


def fragment_stage(tmp_path: Path, model: Path, **fields: object) -> FragmentStage:
    (tmp_path / "qa.j2").write_text(
        "Passage from {{ title }}:\n{{ fragment }}\nWrite a question and its answer."
    )
    spec = FragmentStageSpec(model=str(model), template=str(tmp_path / "qa.j2"), **fields)
    return FragmentStage(spec, BuildContext(tmp_path / "p.yaml"))


def test_fragments_fit_the_budget_and_rows_that_cannot_fit_fail_with_numbers(
    tmp_path: Path, tiny_model: Path
) -> None:
    stage = fragment_stage(tmp_path, tiny_model, max_fragment_tokens=200, max_tokens=32)
    row = {"id": "doc", "text": PARAGRAPH * 200, "title": "Lighthouse"}
    out = stage.process_row(row)
    tokenizer = load_tokenizer(tiny_model, None)
    assert 100 < out["fragment_tokens"] <= out["fragment_budget"] == 200 - 8  # the margin
    assert len(tokenizer(out["fragment"], add_special_tokens=False).input_ids) == out["fragment_tokens"]
    assert out["fragment"] in row["text"] and out == stage.process_row(row)  # seeded by the row's id
    short = stage.process_row({"id": "s", "text": PARAGRAPH, "title": "L"})
    assert short["fragment"] == PARAGRAPH.strip() and short["fragment_start"] == 0
    tight = fragment_stage(tmp_path, tiny_model, context_length=80, max_tokens=32)
    with pytest.raises(
        ValueError, match=r"cannot fit: context 80, prompt template \d+ tokens, max_tokens 32"
    ):
        tight.process_row(row)


def test_qa_select_keeps_a_grounded_pair_on_the_whole_document() -> None:
    stage = QASelectStage(QASelectStageSpec(), BuildContext())
    document = "Intro.\n" + PARAGRAPH + "Outro."
    completions = [
        {"text": "Question: What did the keeper buy?\nAnswer: He bought pizza in Rome."},
        {"text": "no pair here"},
        {
            "text": "Question: Where did the keeper row every Tuesday?\n"
            "Answer: To the mainland, to buy candles."
        },
    ]
    row = {"completions": completions, "fragment": PARAGRAPH, "text": document, "title": "The Keeper",
           "fragment_tokens": 20}  # fmt: skip
    out = stage.process_row(row)
    assert [c["passed"] for c in out["candidates"]] == [False, False, True]
    assert out["messages"][0]["content"].startswith(document)  # the whole document, not the fragment
    assert out["messages"][0]["content"].endswith("Where did the keeper row every Tuesday?")
    assert out["messages"][1]["content"] == "To the mainland, to buy candles."
    none = stage.process_row(row | {"completions": completions[:2]})
    assert none["messages"] is None and none["drop_reason"] == "not_grounded"


def test_long_context_recipe_on_a_tiny_model(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    docs = [{"id": f"d{i}", "title": f"Book {i}", "text": PARAGRAPH * (50 + 30 * i), "source": "test",
             "license": "CC0"} for i in range(3)]  # fmt: skip
    docs.append(
        {"id": "no-room", "title": "x" * 3000, "text": PARAGRAPH * 10, "source": "test", "license": "CC0"}
    )
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    spec = {
        "name": "tiny-lc",
        "source": {"path": "docs.jsonl"},
        "recipe": {
            "name": "long_context_qa",
            "params": {
                "engine": {
                    "model": str(tiny_model),
                    "batch_size": 4,
                    "torch_threads": 1,
                    "max_prompt_tokens": 900,
                },
                "sampling": {"n": 2, "temperature": [0.7, 1.3], "max_tokens": 8},
                "max_fragment_tokens": 300,
                "training_length": 1000,
            },
        },  # fmt: skip
        "outputs": [{"dataset": "lc-sft", "kind": "sft"}, {"dataset": "lc-rows", "kind": "generic"}],
    }
    (tmp_path / "lc.yaml").write_text(yaml.safe_dump(spec))
    job = prepare_job(load_spec(tmp_path / "lc.yaml"), registry, ModelStore(tmp_path / "models"))
    report = run_job(job, registry, log=lambda _: None)
    dead = registry.open("tiny-lc-dead-letter").to_arrow().to_pylist()
    assert [(r["id"], r["stage"]) for r in dead] == [("no-room", "fragment")], dead[0]["error"]
    assert "cannot fit" in dead[0]["error"] and "max_prompt_tokens 900" in dead[0]["error"]
    rows = registry.open("lc-rows").to_arrow().to_pylist()
    assert len(rows) == 3 and all(r["fragment_tokens"] <= 300 for r in rows)
    assert all(len(r["candidates"]) == 2 for r in rows)
    metrics = report.stage_metrics["select"]
    assert metrics["fragments"] == 3 and metrics["candidates"] == 6
    assert sum(metrics["fragment_tokens"]["histogram"]["counts"]) == 3
