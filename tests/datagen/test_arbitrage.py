"""Arbitrage end to end on tiny random models in real Ray: a pool of two teachers (one model
under two system prompts) plus one that always fails, a tiny reward model as the arbiter; an
uncovered language is a dead letter naming it, the failing teacher is recorded and the rows go
on, and the win share per language and teacher lands in the lineage."""

import json
from pathlib import Path

import pytest
import yaml

from datagen.job import prepare_job, run_job
from datagen.spec import load_spec
from datasets_registry import Registry
from model_store import ModelStore

ROWS = [
    ("en-1", "en", "Write a short story about a lighthouse keeper."),
    ("en-2", "en", "Give me three tips for studying."),
    ("fr-1", "fr", "Écris un poème sur la mer, sans virgules."),
    ("fr-2", "fr", "Décris Paris en deux phrases."),
    ("ja-1", "ja", "海についての短い詩を書いてください。"),
    ("de-1", "de", "Schreibe eine kurze E-Mail an deinen Nachbarn."),
]


@pytest.fixture(scope="module")
def tiny_rm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel

    folder = tmp_path_factory.mktemp("arbitrage-rm") / "rm"
    RewardModel.from_backbone(tiny_model, seed=3).save(folder, AutoTokenizer.from_pretrained(tiny_model))
    return folder


def write_spec(tmp_path: Path, model: Path, rm: Path, **params: object) -> Path:
    rows = [{"id": i, "language": lang, "prompt": p} for i, lang, p in ROWS]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    (tmp_path / "t.j2").write_text("{{ prompt }}\n")
    engine = {"model": str(model), "batch_size": 8, "torch_threads": 1, "num_cpus": 0.5}
    spec = {
        "name": "tiny-arbitrage",
        "source": {"path": "rows.jsonl"},
        "recipe": {
            "name": "arbitrage",
            "params": {
                "template": "t.j2",
                "teachers": [
                    {
                        "name": "alpha",
                        "engine": engine,
                        "system": "You are Alpha.",
                        "route": {"values": ["en", "fr", "ja"]},
                    },
                    {
                        "name": "beta",
                        "engine": engine,
                        "system": "You are Beta.",
                        "route": {"values": ["en", "fr"]},
                    },
                    {
                        "name": "broken",
                        "engine": engine | {"max_prompt_tokens": 2},
                        "route": {"values": ["fr"]},
                    },
                ],  # fmt: skip
                "sampling": {"n": 2, "max_tokens": 6},
                "reward_model": str(rm),
                "score_max_length": 128,
                "language_check": False,  # a random model writes no language at all
                **params,
            },
        },
        "outputs": [
            {"dataset": "arb-sft", "kind": "sft"},
            {"dataset": "arb-pref", "kind": "preference"},
            {"dataset": "arb-all", "kind": "generic"},
        ],  # fmt: skip
    }
    path = tmp_path / "arbitrage.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def test_arbitrage_end_to_end(
    tmp_path: Path, tiny_model: Path, tiny_rm: Path, registry: Registry, ray_local: None
) -> None:
    job = prepare_job(
        load_spec(write_spec(tmp_path, tiny_model, tiny_rm)), registry, ModelStore(tmp_path / "m")
    )
    lines: list[str] = []
    report = run_job(job, registry, log=lines.append)

    assert report.rows_in == 6 and report.rows_failed == 1
    (dead,) = registry.open("tiny-arbitrage-dead-letter").to_arrow().to_pylist()
    assert dead["stage"] == "teachers" and "language='de'" in dead["error"]

    rows = {
        r["source_id"] if "source_id" in r else r["id"]: r
        for r in registry.open("arb-all").to_arrow().to_pylist()
    }
    fr = rows["fr-1"]
    assert [e["teacher"] for e in fr["teacher_errors"]] == ["broken"]  # recorded; the row went on
    assert sorted(set(fr["completion_teachers"])) == ["alpha", "beta"] and len(fr["rewards"]) == 4
    assert set(rows["ja-1"]["completion_teachers"]) == {"alpha"}
    for row in rows.values():  # the chosen completion has the best reward of the row
        assert row["scores"]["reward_best"] == max(row["rewards"])
        assert row["chosen_teacher"] == row["completion_teachers"][row["rewards"].index(max(row["rewards"]))]

    metrics = registry.open("arb-sft@1").info.lineage.metrics["stages"]
    share = metrics["select"]["win_share"]
    assert set(share) == {"en", "fr", "ja"} and share["ja"] == {"alpha": 1.0}
    assert all(sum(teachers.values()) == pytest.approx(1.0) for teachers in share.values())
    assert metrics["teachers"]["teacher_failed_rows"] == {"alpha": 0, "beta": 0, "broken": 2}
    assert any("win_share" in line for line in lines)  # printed too
    assert len(registry.open("arb-sft@1").to_arrow()) == 5
