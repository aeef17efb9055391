"""The reward-model score stage adds rewards in real Ray Data actor pools, per row or per
completion; a row it cannot score fails alone; a spec builds it and checks the model early."""

from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from assay.errors import AssayError
from datagen.spec import load_spec
from datagen.stages import build_stages
from datagen.stages.base import ERROR_COLUMN, ERROR_COLUMNS, BuildContext
from datagen.stages.score import ScoreStage, ScoreStageSpec
from model_store import ModelStore
from reward_model.score import RewardScorer

PROMPTS = ["Write a short story about a lighthouse keeper.", "Scrivi una breve descrizione di Roma."]


@pytest.fixture(scope="module")
def reward_model_folder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel

    folder = tmp_path_factory.mktemp("score-rm") / "rm"
    RewardModel.from_backbone(tiny_model, seed=2).save(folder, AutoTokenizer.from_pretrained(tiny_model))
    return folder


def with_error_columns(rows: list[dict]) -> pa.Table:
    table = pa.Table.from_pylist(rows)
    for name, arrow_type in ERROR_COLUMNS.items():
        table = table.append_column(name, pa.nulls(table.num_rows, arrow_type))
    return table


def test_score_stage_adds_rewards_in_ray(reward_model_folder: Path, ray_local: None) -> None:
    import ray.data

    context = BuildContext(store=ModelStore(reward_model_folder.parent / "store"))
    rows = [
        {"prompt_messages": [{"role": "user", "content": PROMPTS[i % 2]}], "completion": f"My answer is {w}."}
        for i, w in enumerate(["yes", "no", "yes yes", "no no", "maybe", "yes"])
    ]
    rows.append({"prompt_messages": [{"role": "user", "content": PROMPTS[0]}], "completion": "yes " * 600})
    spec = ScoreStageSpec(name="score", model=str(reward_model_folder), max_length=128, batch_size=3)
    stage = ScoreStage(spec, context)
    out = stage.apply(ray.data.from_arrow(with_error_columns(rows))).to_pandas()
    assert len(out) == 7
    good, bad = out.iloc[:6], out.iloc[6]
    assert bad[ERROR_COLUMN] and "longer than max_length" in bad[ERROR_COLUMN]  # fails alone
    assert good[ERROR_COLUMN].isna().all()
    expected = RewardScorer(reward_model_folder, max_length=128).score(
        [r["prompt_messages"] for r in rows[:6]], [r["completion"] for r in rows[:6]]
    )
    assert good["reward"].tolist() == pytest.approx(expected, abs=1e-4)
    assert len(set(good["reward"].round(6))) == 6  # every (prompt, completion) scores differently


def test_per_completion_scores_a_generate_stage_output(reward_model_folder: Path, ray_local: None) -> None:
    import ray.data

    context = BuildContext(store=ModelStore(reward_model_folder.parent / "store"))
    completions = [{"text": "My answer is yes.", "model": "m"}, {"text": "My answer is no.", "model": "m"}]
    rows = [
        {"prompt_messages": [{"role": "user", "content": p}], "completions": completions} for p in PROMPTS
    ]
    spec = ScoreStageSpec(
        model=str(reward_model_folder), completion="completions", output="rewards", per_completion=True
    )
    stage = ScoreStage(spec, context)
    assert stage.writes == {"rewards": pa.list_(pa.float64())}
    out = stage.apply(ray.data.from_arrow(with_error_columns(rows))).take_all()
    scorer = RewardScorer(reward_model_folder)
    for row in out:
        assert row["rewards"] == pytest.approx(
            scorer.score([row["prompt_messages"]] * 2, [c["text"] for c in completions]), abs=1e-4
        )


def test_spec_builds_a_score_stage_and_checks_the_model(reward_model_folder: Path, tmp_path: Path) -> None:
    spec = {
        "name": "scored",
        "source": {"path": "rows.jsonl"},
        "stages": [{"type": "score", "name": "rm", "model": str(reward_model_folder), "max_length": 256}],
        "outputs": [{"dataset": "scored", "kind": "generic"}],
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    (stage,) = build_stages(load_spec(path), ModelStore(tmp_path / "models"))
    assert isinstance(stage, ScoreStage) and stage.reads == ("prompt_messages", "completion")
    assert stage.spec.max_length == 256 and stage.models[0].startswith(str(reward_model_folder))
    spec["stages"][0]["model"] = "no-such-rm"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(AssayError, match=r"stages\.0\.model: model 'no-such-rm'"):
        build_stages(load_spec(path), ModelStore(tmp_path / "models"))
