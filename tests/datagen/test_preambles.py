"""The preambles recipe: seeded draws into the system turn, scores that combine the preamble's
check with the row's instructions, and compliance before/after selection on a tiny model."""

import json
from pathlib import Path

import pytest
import yaml

from assay.errors import AssayError
from datagen.job import prepare_job, run_job
from datagen.spec import load_spec
from datagen.stages import BuildContext
from datagen.stages.preambles import (
    PreambleAttachStage,
    PreambleAttachStageSpec,
    PreambleVerifyStage,
    PreambleVerifyStageSpec,
)
from datasets_registry import Registry
from model_store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
PREAMBLES = ROOT / "datagen" / "seeds" / "preambles.jsonl"
USER = [{"role": "user", "content": "Describe the sea."}]


def test_preambles_are_drawn_per_row_and_go_first_in_the_system_turn() -> None:
    stage = PreambleAttachStage(PreambleAttachStageSpec(preambles=str(PREAMBLES)), BuildContext())
    rows = [{"id": f"r{i}", "user_messages": USER} for i in range(30)]
    out = [stage.process_row(row) for row in rows]
    assert out == [stage.process_row(row) for row in rows]
    assert len({o["preamble_type"] for o in out}) >= 3
    assert all(o["prompt_messages"][0]["role"] == "system" and o["prompt_messages"][1:] == USER for o in out)
    with_system = stage.process_row(
        {"id": "r0", "user_messages": [{"role": "system", "content": "Be kind."}, *USER]}
    )
    assert (
        with_system["prompt_messages"][0]["content"].endswith("\n\nBe kind.")
        and len(with_system["prompt_messages"]) == 2
    )
    none = PreambleAttachStage(PreambleAttachStageSpec(preambles=str(PREAMBLES), rate=0.0), BuildContext())
    assert none.process_row(rows[0]) == {"prompt_messages": USER, "preamble_id": None, "preamble_type": None,
                                         "preamble_check": None}  # fmt: skip
    with pytest.raises(AssayError, match="no preamble of types"):
        PreambleAttachStage(
            PreambleAttachStageSpec(preambles=str(PREAMBLES), types=["haiku"]), BuildContext()
        )


def test_scores_combine_the_preamble_with_the_row_instructions() -> None:
    stage = PreambleVerifyStage(PreambleVerifyStageSpec(), BuildContext())
    row = {
        "completions": [{"text": "the sea is calm"}, {"text": "The sea, so calm"}, {"text": "THE SEA, CALM"}],
        "preamble_check": json.dumps({"instruction_id": "change_case:english_lowercase", "kwargs": {}}),
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
    }
    out = stage.process_row(row)
    assert out == {"completion_scores": [1.0, 0.0, 0.0], "preamble_ok": [True, False, False]}
    with pytest.raises(ValueError, match="neither a preamble nor instructions"):
        stage.process_row(
            {"completions": [], "preamble_check": None, "instruction_id_list": [], "kwargs": []}
        )


def test_preambles_recipe_on_a_tiny_model(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    prompts = ["Describe the sea.", "Give advice on sleep.", "Explain rain.", "Name a fruit.", "Say hello."]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps({"prompt": p}) for p in prompts))
    (tmp_path / "t.j2").write_text("{{ prompt }}\n")
    spec = {
        "name": "tiny-preambles",
        "source": {"path": "rows.jsonl"},
        "recipe": {
            "name": "preambles",
            "params": {
                "template": "t.j2",
                "preambles": str(PREAMBLES),
                "min_sft_score": 0.0,
                "engine": {"model": str(tiny_model), "batch_size": 8, "torch_threads": 1},
                "sampling": {"n": 3, "temperature": [0.5, 1.0, 1.5], "max_tokens": 8},
            },
        },  # fmt: skip
        "outputs": [{"dataset": "pre-sft", "kind": "sft"}, {"dataset": "pre-pref", "kind": "preference"}],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    job = prepare_job(load_spec(tmp_path / "p.yaml"), registry, ModelStore(tmp_path / "models"))
    report = run_job(job, registry, log=lambda _: None)
    assert report.rows_failed == 0
    sft = registry.open("pre-sft").to_arrow().to_pylist()
    assert len(sft) == 5 and all(row["messages"][0]["role"] == "system" for row in sft)
    by_type = report.stage_metrics["verify"]["by_type"]
    assert sum(t["prompts"] for t in by_type.values()) == 5
    assert sum(t["completions"] for t in by_type.values()) == 15
    for summary in by_type.values():  # best-of-N never picks a worse completion on its only check
        assert summary["after"] >= summary["before"]
