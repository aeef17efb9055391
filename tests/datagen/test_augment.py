"""Prompt augmentation (`augment_prompts`): stricter injection is seeded and verified by the
IFEval verifier, complexify's elimination and paraphrase's acceptance on hand-written rewrites,
and each mode as a real Ray job with the tiny random model (its garbage is rejected; the counts
add up and land in the lineage). Prompts come from datagen/seeds/ifeval_multilingual.jsonl."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from assay.errors import AssayError
from datagen.job import prepare_job, run_job
from datagen.spec import load_spec
from datagen.stages.augment import (
    AugmentCheckStage,
    AugmentCheckStageSpec,
    AugmentPrepareStage,
    AugmentPrepareStageSpec,
    instruction_ngrams,
)
from datagen.stages.augment_constraints import KWARGS_TYPE, REQUIREMENTS, catalogue_problems, conflicts
from datagen.stages.base import BuildContext
from datagen.stages.reformulate import ReformulationCheckStage, ReformulationCheckStageSpec
from datagen.stages.verify import IFEvalVerifyStage, IFEvalVerifyStageSpec
from datasets_registry import Registry
from model_store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
# Read as JSON, not through Arrow: an Arrow round trip adds every row's kwargs keys as nulls, and a
# JSONL source whose struct has an all-null key fails at the output write (a registry issue).
SEEDS = {
    row["id"]: row
    for row in map(
        json.loads, (ROOT / "datagen" / "seeds" / "ifeval_multilingual.jsonl").read_text().splitlines()
    )
}
LIGHTHOUSE = SEEDS["seed-en-01"]["prompt"]  # "... Keep it under 120 words and do not use any commas ..."


def prepare(mode: str, row: dict, **options: object) -> dict:
    return AugmentPrepareStage(AugmentPrepareStageSpec(mode=mode, **options)).process_row(row)


def through_arrow(kwargs: list[dict]) -> list[dict]:
    """The kwargs as the next stage reads them: every key of the struct, None where unset."""
    return pa.scalar(kwargs, type=KWARGS_TYPE).as_py()


def test_stricter_injection_is_seeded_and_fits_the_row() -> None:
    assert catalogue_problems() == []  # every id verifiable by judges.ifeval, worded in 6 languages
    rows = list(SEEDS.values())
    first = [prepare("stricter", row, count=2, seed=7) for row in rows]
    assert first == [prepare("stricter", row, count=2, seed=7) for row in rows]  # reproducible
    other = [prepare("stricter", row, count=2, seed=8) for row in rows]
    assert [o["injected_instructions"] for o in other] != [f["injected_instructions"] for f in first]
    for row, out in zip(rows, first, strict=True):
        injected = out["injected_instructions"]
        assert out["original_prompt"] == row["prompt"] and out["augment_mode"] == "stricter"
        assert out["instruction_id_list"] == row["instruction_id_list"] + injected
        assert len(out["kwargs"]) == len(out["instruction_id_list"])
        assert 1 <= len(injected) <= 2 and set(injected) <= set(REQUIREMENTS)
        for i, instruction_id in enumerate(injected):  # nothing repeated, nothing contradictory
            others = row["instruction_id_list"] + injected[:i]
            assert not any(conflicts(instruction_id, other) for other in others)
        assert out["prompt"].startswith(row["prompt"].rstrip()) and len(out["prompt"]) > len(row["prompt"])
    # The row's own kwargs survive the struct the column is written in.
    assert through_arrow(first[0]["kwargs"])[0]["num_words"] == 120
    french = prepare("stricter", SEEDS["seed-fr-01"], constraints=["detectable_format:title"])
    assert french["prompt"].endswith(
        "Donne à ta réponse un titre entre doubles chevrons, par exemple <<mon titre>>."
    )
    # The row already forbids commas: asking again is no new requirement.
    assert prepare("stricter", SEEDS["seed-fr-01"], constraints=["punctuation:no_comma"])["augment_drop"] == (
        "no_compatible_requirement"
    )
    japanese = prepare("stricter", {**SEEDS["seed-en-03"], "language": "ja"})
    assert japanese["augment_drop"] == "no_wording_in_ja" and japanese["augment_route"] == "skip"
    # JSON fits beside nothing that shapes the answer: a row asking for a title gets none.
    json_row = {
        **SEEDS["seed-en-03"],
        "instruction_id_list": ["detectable_format:json_format"],
        "kwargs": [{}],
    }
    blocked = prepare("stricter", json_row, constraints=["detectable_format:title", "startend:end_checker"])
    assert blocked["augment_drop"] == "no_compatible_requirement"
    with pytest.raises(ValueError, match="kwarg 'colour' is not one judges.ifeval reads"):
        prepare("stricter", {**json_row, "kwargs": [{"colour": "red"}]})


def compliant_and_violating(instruction_id: str, kwargs: dict) -> tuple[str, str]:
    """A reply that follows the injected instruction and one that breaks it."""
    if instruction_id == "punctuation:no_comma":
        return "The keeper read the note twice.", "The keeper, alone, read the note."
    if instruction_id == "length_constraints:number_words":
        short, long = "word " * (kwargs["num_words"] - 1), "word " * (kwargs["num_words"] + 5)
        return (short, long) if kwargs["relation"] == "less than" else (long, short)
    if instruction_id == "detectable_format:number_bullet_lists":
        bullets = [f"* point {k}" for k in range(kwargs["num_bullets"] + 1)]
        return "\n".join(bullets[:-1]), "\n".join(bullets)
    if instruction_id == "detectable_format:title":
        return "<<The Keeper>>\nA note arrived.", "The Keeper\nA note arrived."
    if instruction_id == "detectable_content:postscript":
        return "A note arrived.\nP.S. It was dry.", "A note arrived."
    if instruction_id == "startend:end_checker":
        return f"A note arrived. {kwargs['end_phrase']}", f"{kwargs['end_phrase']} A note arrived."
    if instruction_id == "detectable_format:number_highlighted_sections":
        return " ".join(f"*part {k}*" for k in range(kwargs["num_highlights"])), "No highlights here."
    if instruction_id == "detectable_format:json_format":
        return '{"story": "A note arrived."}', "story: A note arrived."
    raise AssertionError(f"no test replies for {instruction_id}")


@pytest.mark.parametrize("instruction_id", sorted(REQUIREMENTS))
def test_ifeval_verify_checks_the_injected_requirement(instruction_id: str) -> None:
    # A seed prompt without its own instructions, so the score is the injected one's alone.
    row = {k: v for k, v in SEEDS["seed-en-05"].items() if k not in ("instruction_id_list", "kwargs")}
    out = prepare("stricter", row, constraints=[instruction_id], seed=3)
    assert out["instruction_id_list"] == [instruction_id]
    kwargs = through_arrow(out["kwargs"])
    good, bad = compliant_and_violating(instruction_id, out["kwargs"][0])
    verify = IFEvalVerifyStage(IFEvalVerifyStageSpec(type="ifeval_verify"))
    scored = verify.process_row(
        {
            "completions": [{"text": good}, {"text": bad}],
            "instruction_id_list": out["instruction_id_list"],
            "kwargs": kwargs,
        }
    )
    assert scored["completion_scores"] == [1.0, 0.0]


def test_stricter_on_an_mbpp_problem_keeps_the_code_verifiable(shared_data: Path) -> None:
    from datagen.stages.code_problems import MbppProblemsStage, MbppProblemsStageSpec
    from sandbox.extract import extract_code

    lines = (shared_data / "mbpp" / "mbpp.jsonl").read_text().splitlines()
    task = next(t for t in map(json.loads, lines) if t["task_id"] == 603)  # MBPP's train split
    problem = MbppProblemsStage(MbppProblemsStageSpec(type="mbpp_problems")).process_row(task)
    row = {**problem, "id": "mbpp-603"}  # `language` is python: the prompt's own language is English
    code_safe = ["detectable_format:title", "detectable_content:postscript", "startend:end_checker"]
    out = prepare("stricter", row, constraints=code_safe, count=3, language_column=None)
    assert sorted(out["injected_instructions"]) == sorted(code_safe)
    end = out["kwargs"][out["instruction_id_list"].index("startend:end_checker")]["end_phrase"]
    block = f"```python\n{problem['solution']}\n```"
    good, bad = f"<<Ludic numbers>>\n{block}\nP.S. It passes the asserts. {end}", block
    verify = IFEvalVerifyStage(IFEvalVerifyStageSpec(type="ifeval_verify"))
    scored = verify.process_row(
        {
            "completions": [{"text": good}, {"text": bad}],
            "instruction_id_list": out["instruction_id_list"],
            "kwargs": through_arrow(out["kwargs"]),
        }
    )
    assert scored["completion_scores"] == [1.0, 0.0]
    # The program the `execute` stage runs is the same with or without the added form.
    assert extract_code(good, ("python", "py")) == extract_code(bad, ("python", "py"))


def check(mode: str, original: str, rewrite: str, reference: str | None = None, messages=None, **kw) -> str:  # noqa: ANN001, ANN003
    stage = AugmentCheckStage(AugmentCheckStageSpec(mode=mode, **kw))
    reference = reference or original
    return stage.verdict(original, reference, rewrite, instruction_ngrams(messages, original, reference))


def test_complexify_elimination_on_hand_written_evolutions() -> None:
    messages = [
        {
            "role": "user",
            "content": prepare("complexify", SEEDS["seed-en-01"], seed=1)["augment_messages"][0]["content"],
        }
    ]
    good = (
        "Write a short story about a lighthouse keeper on a foggy Maine island in 1890 who finds a message "
        "in a bottle washed up on the rocks, and reveal by the end who sent it and why. Keep it under 120 "
        "words and do not use any commas anywhere in your response."
    )
    cases = {
        good: "passed",
        "": "empty",
        "I'm sorry, but I can't help with that request.": "refused",
        "#Rewritten Prompt#: " + good: "leak",
        "The result must still be a sensible task a person can understand and answer. " + good: "leak",
        LIGHTHOUSE: "copy",
        "Write a short story about a lighthouse keeper. Keep it under 120 words.": "no_gain",
        good.replace("under 120 words", "under 90 words"): "literals",
        "Explain in detail how photosynthesis converts sunlight, water and carbon dioxide into glucose and "
        "oxygen inside the chloroplasts of green plants, naming each stage of the light reactions and of "
        "the Calvin cycle, and say why leaves change colour in autumn, in under 120 words.": "meaning",
        good + " " + " ".join(["Add many more unrelated words here."] * 20): "length",
    }
    for rewrite, expected in cases.items():
        assert check("complexify", LIGHTHOUSE, rewrite, messages=messages) == expected, rewrite


def test_paraphrase_acceptance_reuses_the_reformulation_check() -> None:
    reformulation = ReformulationCheckStage(ReformulationCheckStageSpec(type="reformulation_check"))
    good = (
        "Compose a short story in which a lighthouse keeper finds a message in a bottle washed up on the "
        "rocks. Use no commas anywhere in your response and keep it under 120 words."
    )
    cases = {
        good: "passed",
        LIGHTHOUSE: "copy",  # the same wording
        "Write a cheerful poem about cats and dogs playing together in a sunny garden, with one verse for "
        "each animal and a happy ending for both of them.": "meaning",
        "Story.": "length",
        "I can't help with that.": "refused",
        good.replace("120", "200"): "literals",  # the number changed: not the same request
    }
    for rewrite, expected in cases.items():
        assert check("paraphrase", LIGHTHOUSE, rewrite) == expected, rewrite
        if expected in ("copy", "meaning", "length", "refused"):  # reformulate's own verdicts
            assert reformulation.check(LIGHTHOUSE, rewrite)[1] == expected


def test_stricter_rephrasing_must_keep_each_requirement() -> None:
    out = prepare(
        "stricter", SEEDS["seed-en-04"], constraints=["startend:end_checker"], phrase_with_model=True
    )
    phrase = out["kwargs"][-1]["end_phrase"]
    rephrased = out["prompt"].replace("End your response with the exact phrase", "Please finish with")
    stage = AugmentCheckStage(AugmentCheckStageSpec(mode="stricter"))
    instruction = instruction_ngrams(out["augment_messages"], out["original_prompt"], out["prompt"])
    markers = out["augment_markers"]
    verdict = stage.verdict(out["original_prompt"], out["prompt"], rephrased, instruction, markers)
    assert verdict == "passed"
    dropped = rephrased.replace(phrase, "a friendly closing line")
    verdict = stage.verdict(out["original_prompt"], out["prompt"], dropped, instruction, markers)
    assert verdict == "requirements"
    row = {**out, "augment_candidates": [{"text": dropped}]}
    checked = stage.process_row(row)  # no rephrasing passes: the deterministic prompt stands
    assert checked["prompt"] == out["prompt"] and checked["augmented"] and not checked["augment_phrased"]


def write_spec(tmp_path: Path, model: Path | None, rows: list[dict], params: dict) -> Path:
    (tmp_path / "prompts.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    engine = {"engine": {"model": str(model), "batch_size": 4, "torch_threads": 1}} if model else {}
    sampling = {"sampling": {"n": 2, "max_tokens": 8}} if model else {}
    spec = {
        "name": "augment",
        "source": {"path": "prompts.jsonl"},
        "recipe": {"name": "augment_prompts", "params": {**engine, **sampling, **params}},
        "outputs": [
            {"dataset": "augmented", "kind": "prompts"},
            {"dataset": "augmented-all", "kind": "generic"},
        ],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def run(path: Path, tmp_path: Path, registry: Registry):  # noqa: ANN201
    loaded = load_spec(path)
    return loaded, run_job(
        prepare_job(loaded, registry, ModelStore(tmp_path / "models")), registry, log=lambda _: None
    )


def test_paraphrase_job_rejects_garbage_and_records_counts(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    rows = [SEEDS[i] for i in ("seed-en-01", "seed-fr-01", "seed-es-01")]
    path = write_spec(tmp_path, tiny_model, rows, {"mode": "paraphrase", "drop_rejected": False})
    loaded, report = run(path, tmp_path, registry)
    assert [s.type for s in loaded.spec.stages] == ["augment_prepare", "generate", "augment_check"]
    metrics = report.stage_metrics["augment-check"]
    assert metrics["rows"] == 3 and metrics["rows_augmented"] + sum(metrics["rejected_by"].values()) == 3
    candidates = metrics["candidates"]
    checks = ["empty", "refused", "copy", "length", "meaning", "leak", "literals"]
    assert candidates["generated"] == 6 and list(candidates)[1:] == [f"after_{c}" for c in checks]
    assert sorted(candidates.values(), reverse=True) == list(candidates.values())  # survival only falls
    out = registry.open("augmented-all").to_arrow().to_pylist()
    assert sorted(r["original_prompt"] for r in out) == sorted(r["prompt"] for r in rows)
    for r in out:  # a rejected row keeps its original and the reason, with a null prompt
        assert r["augment_mode"] == "paraphrase" and len(r["augment_verdicts"]) == 2
        assert (r["prompt"] is None) == (not r["augmented"])
    lineage = registry.open("augmented-all").info.lineage
    assert lineage.metrics["stages"]["augment-check"]["candidates"]["generated"] == 6


def test_complexify_job_drops_rejected_rows_and_counts_them(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    rows = [SEEDS[i] for i in ("seed-en-02", "seed-de-01", "seed-it-01", "seed-pt-01")]
    path = write_spec(tmp_path, tiny_model, rows, {"mode": "complexify", "seed": 3})
    _, report = run(path, tmp_path, registry)
    metrics = report.stage_metrics["augment-check"]
    assert metrics["rows"] == 4 and metrics["candidates"]["generated"] == 8
    assert metrics["rows_dropped"] == 4 - metrics["rows_augmented"]
    assert sum(op["rows"] for op in metrics["by_operation"].values()) == 4
    assert report.rows_in == metrics["rows_augmented"]  # what is left after the drops
    if metrics["rows_augmented"] == 0:
        assert sorted(report.skipped) == ["augmented", "augmented-all"]


def test_stricter_job_injects_and_routes_rows_without_wording_past_the_model(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    rows = [
        SEEDS["seed-en-01"],
        SEEDS["seed-fr-02"],
        {**SEEDS["seed-en-03"], "id": "ja-row", "language": "ja"},
    ]
    path = write_spec(tmp_path, tiny_model, rows, {"mode": "stricter", "phrase_with_model": True, "count": 2})
    _, report = run(path, tmp_path, registry)
    metrics = report.stage_metrics["augment-check"]
    assert metrics["rows"] == 3 and metrics["rows_augmented"] == 2 and metrics["rows_dropped"] == 1
    assert metrics["candidates"]["generated"] == 4  # the Japanese row never reached the model
    assert sum(metrics["injected"].values()) == 4 and metrics["phrased"] <= 2
    out = {r["id"]: r for r in registry.open("augmented-all").to_arrow().to_pylist()}
    assert set(out) == {"seed-en-01", "seed-fr-02"}
    for row in out.values():
        assert len(row["instruction_id_list"]) == len(row["kwargs"]) >= 3
        assert row["prompt"] != row["original_prompt"]
    lineage = registry.open("augmented").info.lineage
    assert lineage.metrics["stages"]["augment-check"]["mode"] == "stricter"


def test_examples_load_and_bad_params_fail_before_the_job(tmp_path: Path) -> None:
    for name, mode in [("augment_prompts.yaml", "complexify"), ("augment_stricter.yaml", "stricter")]:
        loaded = load_spec(ROOT / "examples" / name)
        prepare_spec = loaded.spec.stages[0]
        assert prepare_spec.type == "augment_prepare" and prepare_spec.mode == mode
        AugmentPrepareStage(prepare_spec, BuildContext(loaded.path))  # its templates load
    bad = write_spec(
        tmp_path, None, [SEEDS["seed-en-01"]], {"mode": "stricter", "constraints": ["keywords:nope"]}
    )
    with pytest.raises(AssayError, match=r"recipe.params.*keywords:nope"):
        load_spec(bad)
    params = {"mode": "complexify", "templates": {"shorten": "x.j2"}}
    bad = write_spec(tmp_path, None, [SEEDS["seed-en-01"]], params)
    with pytest.raises(AssayError, match=r"recipe.params.*\['shorten'\] are not used in mode complexify"):
        load_spec(bad)
