"""Selection by reward model and/or verifier: the best is chosen among eligible completions,
ties and disagreements give no pair, low rewards drop the prompt, wrong-language completions are
never chosen; the win share sums per language and teacher; the recipes expand compatibly."""

from pathlib import Path

import pytest
import yaml

from assay.errors import AssayError
from datagen.spec import load_spec
from datagen.stages.language_check import LanguageCheckStage, LanguageCheckStageSpec
from datagen.stages.rank_select import RankSelectStage, RankSelectStageSpec, summarise

PROMPT = [{"role": "user", "content": "Hi"}]


def completions(*texts: str) -> list[dict]:
    return [{"text": t, "temperature": 1.0} for t in texts]


def select(row: dict, **spec: object) -> dict:
    stage = RankSelectStage(RankSelectStageSpec(**spec))
    return stage.process_row({"prompt_messages": PROMPT, **row})


def test_reward_picks_best_and_worst() -> None:
    out = select({"completions": completions("a", "b", "c"), "rewards": [0.1, 2.0, -1.0]})
    assert out["messages"][-1]["content"] == "b"
    assert out["chosen"][0]["content"] == "b" and out["rejected"][0]["content"] == "c"
    assert out["scores"]["reward_best"] == 2.0 and out["drop_reason"] is None


def test_ties_give_no_pair_but_keep_sft() -> None:
    out = select({"completions": completions("a", "b"), "rewards": [1.0, 1.0]})
    assert out["messages"] is not None and out["chosen"] is None and out["drop_reason"] == "tie"


def test_wrong_language_completion_is_never_chosen() -> None:
    row = {
        "completions": completions("english", "français"),
        "rewards": [5.0, 1.0],
        "language_ok": [False, True],
    }
    out = select(row, language_ok="language_ok")
    assert out["messages"][-1]["content"] == "français" and out["chosen"] is None  # one eligible: no pair
    none_ok = select({**row, "language_ok": [False, False]}, language_ok="language_ok")
    assert none_ok["messages"] is None and none_ok["drop_reason"] == "no_eligible_completion"


def test_thresholds_drop_prompts() -> None:
    row = {"completions": completions("a", "b"), "rewards": [-3.0, 0.5]}
    assert select(row, min_reward=1.0)["drop_reason"] == "best_reward_below_threshold"
    assert select(row, min_mean_reward=0.0)["drop_reason"] == "mean_reward_below_threshold"
    assert select(row, min_reward=0.0)["chosen"] is not None


def test_both_ranks_by_reward_among_passing_and_drops_disagreements() -> None:
    row = {"completions": completions("pass-low", "fail-high", "pass-high"),
           "rewards": [0.0, 9.0, 1.0], "verifier": [1.0, 0.5, 1.0]}  # fmt: skip
    out = select(row, verifier="verifier", rank_by="both")
    assert out["messages"][-1]["content"] == "pass-high"
    assert out["rejected"][0]["content"] == "fail-high"  # a failing completion ranks below every passing one
    dropped = select(row, verifier="verifier", rank_by="both", drop_disagreements=True)
    assert dropped["chosen"] is None and dropped["drop_reason"] == "reward_verifier_disagree"
    assert dropped["messages"] is not None  # the SFT row stays
    nobody = select({**row, "verifier": [0.0, 0.5, 0.0]}, verifier="verifier", rank_by="both")
    assert nobody["messages"] is None and nobody["drop_reason"] == "no_completion_passes_verifier"


def test_only_teacher_and_teacher_best() -> None:
    row = {"completions": completions("a1", "b1", "a2"), "rewards": [1.0, 3.0, 2.0],
           "teachers": ["a", "b", "a"]}  # fmt: skip
    out = select(row, teachers="teachers")
    assert out["chosen_teacher"] == "b" and out["rejected_teacher"] == "a"
    assert out["teacher_best"] == [{"teacher": "a", "reward": 2.0}, {"teacher": "b", "reward": 3.0}]
    baseline = select(row, teachers="teachers", only_teacher="a")
    assert baseline["messages"][-1]["content"] == "a2" and baseline["chosen_teacher"] == "a"


def test_spec_refuses_a_mode_without_its_column() -> None:
    with pytest.raises(ValueError, match="needs a `verifier` column"):
        RankSelectStageSpec(rank_by="both")
    with pytest.raises(ValueError, match="needs both"):
        RankSelectStageSpec(drop_disagreements=True)


def best(**rewards: float) -> list[dict]:
    return [{"teacher": t, "reward": r} for t, r in rewards.items()]


def test_summarise_win_share_and_single_best_teacher() -> None:
    rows = [
        {"language": "fr", "chosen_teacher": "a", "drop_reason": None, "messages": [1], "chosen": [1],
         "scores": {"reward_best": 2.0}, "teacher_best": best(a=2.0, b=1.0)},
        {"language": "fr", "chosen_teacher": "b", "drop_reason": "tie", "messages": [1], "chosen": None,
         "scores": {"reward_best": 3.0}, "teacher_best": best(a=0.0, b=3.0)},
        {"language": "ja", "chosen_teacher": "b", "drop_reason": None, "messages": [1], "chosen": [1],
         "scores": {"reward_best": 1.0}, "teacher_best": best(b=1.0)},
    ]  # fmt: skip
    metrics = summarise(rows, "language")
    assert metrics["win_share"] == {"fr": {"a": 0.5, "b": 0.5}, "ja": {"b": 1.0}}
    assert metrics["pairs"] == 2 and metrics["dropped"] == {"tie": 1}
    assert metrics["single_best_teacher"] == "b"  # mean best 5/3 against a's 1.0
    assert metrics["chosen_vs_single_best"] == {
        "rows": 3,
        "chosen_mean_reward": 2.0,
        "single_best_mean_reward": 1.6667,
    }


def test_language_check_stage_follows_response_language_and_zeroes_scores() -> None:
    spec = LanguageCheckStageSpec(follow_instructions=True, zero_scores=["completion_scores"])
    stage = LanguageCheckStage(spec)
    row = {
        "language": "ja",
        "instruction_id_list": ["ja:language:response_language"],
        "kwargs": [{"language": "fr"}],
        "completions": completions(
            "Les plantes ont besoin d'eau chaque matin avant la chaleur.",
            "植物には毎朝、暑くなる前に水をあげてください。",
        ),
        "completion_scores": [1.0, 1.0],
    }
    out = stage.process_row(row)
    assert out["language_ok"] == [True, False] and out["language_detected"] == ["fr", "ja"]
    assert out["completion_scores"] == [1.0, 0.0]
    with pytest.raises(ValueError, match="no language"):
        stage.process_row({**row, "instruction_id_list": [], "language": None})


def write_spec(tmp_path: Path, recipe: dict) -> Path:
    (tmp_path / "t.j2").write_text("{{ prompt }}\n")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "source": {"path": "rows.jsonl"}, "recipe": recipe,
                                    "outputs": [{"dataset": "d", "kind": "sft"}]}))  # fmt: skip
    return path


def test_best_of_n_recipe_without_a_reward_model_is_unchanged(tmp_path: Path) -> None:
    loaded = load_spec(write_spec(tmp_path, {"name": "best_of_n", "params": {"template": "t.j2"}}))
    assert [s.type for s in loaded.spec.stages] == ["render", "generate", "ifeval_verify", "best_of_n"]
    rm = {"template": "t.j2", "reward_model": "rm", "rank_by": "both", "drop_disagreements": True,
          "min_mean_reward": -1.0}  # fmt: skip
    stages = load_spec(write_spec(tmp_path, {"name": "best_of_n", "params": rm})).spec.stages
    assert [s.type for s in stages] == ["render", "generate", "ifeval_verify", "score", "rank_select"]
    assert (
        stages[-1].rank_by == "both" and stages[-1].drop_disagreements and stages[-1].min_mean_reward == -1.0
    )
    with pytest.raises(AssayError, match="need `reward_model`"):
        load_spec(
            write_spec(tmp_path, {"name": "best_of_n", "params": {"template": "t.j2", "rank_by": "reward"}})
        )


def test_arbitrage_recipe_expands_and_checks_its_baseline_teacher(tmp_path: Path) -> None:
    params = {"template": "t.j2", "reward_model": "rm", "selection": "single_teacher", "teacher": "b",
              "teachers": [{"name": "a", "engine": {"model": "m"}, "route": {"values": ["fr"]}},
                           {"name": "b", "engine": {"model": "m"}, "system": "Parle français."}]}  # fmt: skip
    stages = load_spec(write_spec(tmp_path, {"name": "arbitrage", "params": params})).spec.stages
    assert [s.type for s in stages] == ["render", "teacher_pool", "language_check", "score", "rank_select"]
    assert stages[-1].only_teacher == "b" and stages[1].teachers[1].system == "Parle français."
    with pytest.raises(AssayError, match="single_teacher needs `teacher`"):
        load_spec(write_spec(tmp_path, {"name": "arbitrage", "params": {**params, "teacher": "c"}}))
    same_names = {**params, "selection": "reward", "teachers": [params["teachers"][0]] * 2}
    with pytest.raises(AssayError, match="unique"):
        load_spec(write_spec(tmp_path, {"name": "arbitrage", "params": same_names}))


def test_a_teacher_system_message_replaces_the_conversation_s() -> None:
    from datagen.stages.teacher_pool import with_system

    conversation = [{"role": "system", "content": "old"}, {"role": "user", "content": "Hi"}]
    assert with_system(conversation, "new") == [{"role": "system", "content": "new"}, conversation[1]]
    assert with_system(conversation, None) is conversation
