"""The whole best-of-N pipeline on a tiny random model: outputs, lineage, dead letters, and the
CLI's handling of bad input (exit 2, nothing written)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from assay.errors import AssayError
from datagen.job import prepare_job, run_job
from datagen.spec import load_spec
from datasets_registry import Registry
from model_store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "datagen" / "seeds" / "ifeval_multilingual.jsonl"
ASSAY = Path(sys.executable).parent / "assay"


def seed_rows(n: int) -> list[dict]:
    return [json.loads(line) for line in SEEDS.read_text().splitlines()[:n]]


def write_pipeline(tmp_path: Path, model: Path, rows: list[dict], **overrides: object) -> Path:
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    (tmp_path / "t.j2").write_text("{{ prompt }}\n")
    spec = {
        "name": "tiny-bon",
        "source": {"path": "rows.jsonl"},
        "stages": [
            {"type": "render", "name": "render", "template": "t.j2"},
            {
                "type": "generate",
                "name": "generate",
                "engine": {"model": str(model), "batch_size": 4, "torch_threads": 1},
                "sampling": {"n": 3, "temperature": [0.5, 1.0, 1.5], "max_tokens": 8},
            },
            {"type": "ifeval_verify", "name": "verify"},
            {"type": "best_of_n", "name": "select"},
        ],
        "outputs": [{"dataset": "tiny-sft", "kind": "sft"}, {"dataset": "tiny-pref", "kind": "preference"}],
        **overrides,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def test_pipeline_end_to_end(tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None) -> None:
    rows = seed_rows(6)
    bad_template = {**rows[0], "id": "bad-template", "prompt": None}
    bad_instruction = {**rows[1], "id": "bad-instruction", "instruction_id_list": ["en:made_up:instruction"],
                       "kwargs": [{}]}  # fmt: skip
    loaded = load_spec(write_pipeline(tmp_path, tiny_model, [*rows, bad_template, bad_instruction]))
    job = prepare_job(loaded, registry, ModelStore(tmp_path / "models"))
    report = run_job(job, registry, log=lambda _: None)

    assert report.rows_in == 8 and report.rows_failed == 2
    dead = registry.open("tiny-bon-dead-letter").to_arrow().to_pylist()
    by_id = {row["id"]: row for row in dead}
    assert by_id["bad-template"]["stage"] == "render"
    assert "'prompt' is undefined" in by_id["bad-template"]["error"]
    assert by_id["bad-instruction"]["stage"] == "verify"
    assert "en:made_up:instruction" in by_id["bad-instruction"]["error"]
    failed_input = json.loads(by_id["bad-instruction"]["row"])
    assert failed_input["instruction_id_list"] == ["en:made_up:instruction"]
    assert failed_input["prompt"] == rows[1]["prompt"]  # the input as it was, for a retry
    assert len(failed_input["completions"]) == 3
    assert {row["job_id"] for row in dead} == {report.job_id}

    sft = registry.open("tiny-sft@1")
    sft_rows = sft.to_arrow().to_pylist()
    assert len(sft_rows) == 6  # min_sft_score 0: every finished prompt gives its best completion
    assert {row["source_id"] for row in sft_rows} == {row["id"] for row in rows}
    assert len({row["id"] for row in sft_rows}) == 6
    for row in sft_rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["scores"]["n"] == 3
    expected_pairs = sum(r["scores"]["ifeval_best"] > r["scores"]["ifeval_worst"] for r in sft_rows)
    pref = registry.open("tiny-pref@1")
    assert pref.num_rows == expected_pairs
    for row in pref.to_arrow().to_pylist():
        assert row["chosen"][0]["role"] == "assistant" and row["prompt"][0]["role"] == "user"

    lineage = sft.info.lineage
    assert lineage.job_id == report.job_id == pref.info.job_id
    assert lineage.pipeline == "tiny-bon" and len(lineage.spec_hash or "") == 64
    assert lineage.models == [f"{tiny_model}#" + lineage.models[0].split("#")[1]]
    assert lineage.sources[0].startswith(f"file:{tmp_path / 'rows.jsonl'}#sha256=")
    # 7 rows reached generation (one failed rendering), 3 samples each; "bad-instruction" has the
    # same prompt as seed row 1, so unless both were in one batch its call was a cache hit.
    (usage,) = report.usage["generate"].values()  # one model
    assert usage["completions"] + usage["cache_hits"] == 21 and usage["cache_hits"] in (0, 3)
    assert 0 < usage["completion_tokens"] <= 21 * 8 and usage["prompt_tokens"] > 0
    assert usage["generate_s"] > 0 and usage["tokens_per_s"] > 0
    assert lineage.metrics["usage"] == report.usage


def test_a_job_where_every_row_fails_keeps_its_dead_letters(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    rows = [{**row, "prompt": None} for row in seed_rows(3)]
    loaded = load_spec(write_pipeline(tmp_path, tiny_model, rows))
    report = run_job(
        prepare_job(loaded, registry, ModelStore(tmp_path / "models")), registry, log=lambda _: None
    )
    assert (report.rows_in, report.rows_failed, report.outputs) == (3, 3, [])
    assert report.skipped == ["tiny-sft", "tiny-pref"]
    assert registry.names() == ["tiny-bon-dead-letter"]
    assert {row["stage"] for row in registry.open("tiny-bon-dead-letter").to_arrow().to_pylist()} == {
        "render"
    }


def test_preference_output_needs_two_samples(tmp_path: Path, tiny_model: Path, registry: Registry) -> None:
    loaded = load_spec(write_pipeline(tmp_path, tiny_model, seed_rows(2)), ["stages.1.sampling.n=1",
                       "stages.1.sampling.temperature=0.5"])  # fmt: skip
    with pytest.raises(AssayError, match="preference output needs sampling.n >= 2"):
        prepare_job(loaded, registry, ModelStore(tmp_path / "models"))


def test_model_without_chat_template_fails_before_ray(
    tmp_path: Path, tiny_model: Path, registry: Registry
) -> None:
    import shutil

    bare = tmp_path / "bare-model"
    shutil.copytree(tiny_model, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    loaded = load_spec(write_pipeline(tmp_path, bare, seed_rows(2)))
    with pytest.raises(AssayError, match="has no chat template"):
        prepare_job(loaded, registry, ModelStore(tmp_path / "models"))


def run_cli(*args: str, registry: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSAY_REGISTRY": str(registry), "COLUMNS": "200"}
    return subprocess.run([str(ASSAY), *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_runs_pipeline_and_inspects_results(tmp_path: Path, tiny_model: Path) -> None:
    spec = write_pipeline(tmp_path, tiny_model, seed_rows(4), ray={"num_cpus": 2})
    reg = tmp_path / "cli-registry"
    result = run_cli("run", str(spec), "--set", "stages.1.sampling.n=2",
                     "--set", "stages.1.sampling.temperature=0.9", registry=reg)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "tiny-sft@1" in result.stdout and "assay data show tiny-sft@1" in result.stdout
    assert Registry(reg).open("tiny-sft@1").to_arrow()["scores"].to_pylist()[0]["n"] == 2
    listing = run_cli("data", "list", registry=reg)
    assert listing.returncode == 0 and "tiny-sft" in listing.stdout
    # A random tiny model rarely scores two samples differently: no pairs, nothing registered.
    assert ("tiny-pref" in listing.stdout) != ("tiny-pref: no rows" in result.stdout)
    shown = run_cli("data", "show", "tiny-sft@1", registry=reg)
    assert shown.returncode == 0
    assert "kind=sft" in shown.stdout and "messages" in shown.stdout and "tiny-bon-" in shown.stdout
    head = run_cli("data", "head", "tiny-sft", "-n", "2", registry=reg)
    assert head.returncode == 0 and head.stdout.count('"messages"') == 2


BAD_INPUTS = {
    "malformed-yaml": ("spec", "name: [unclosed", "malformed YAML"),
    "unknown-stage": ("override", "stages.3.type=translate", "does not match any of the expected tags"),
    "unknown-recipe": (
        "spec",
        "name: x\nrecipe: {name: nope}\nsource: {path: rows.jsonl}\n",
        "unknown recipe",
    ),
    "missing-variable": ("template", "{{ prompt }} {{ tone }}", "reads 'tone'"),
    "missing-model": (
        "override",
        "stages.1.engine.model=/nowhere/model",
        "engine.model: model '/nowhere/model'",
    ),
    "unknown-dataset": ("override", "source={dataset: nope@3}", "no dataset named 'nope'"),
    "unknown-kind": ("override", "outputs.0.kind=bogus", "outputs.0.kind"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_and_writes_nothing(case: str, tmp_path: Path, tiny_model: Path) -> None:
    how, value, message = BAD_INPUTS[case]
    spec = write_pipeline(tmp_path, tiny_model, seed_rows(2))
    args = ["run", str(spec)]
    if how == "spec":
        spec.write_text(value)
    elif how == "template":
        (tmp_path / "t.j2").write_text(value)
    else:
        args += ["--set", value]
    reg = tmp_path / "registry"
    result = run_cli(*args, registry=reg)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert Registry(reg).names() == []


def test_cli_unknown_dataset_version_exits_2(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    Registry(reg).write("d", __import__("pyarrow").table({"x": [1]}))
    result = run_cli("data", "show", "d@5", registry=reg)
    assert result.returncode == 2 and "no version 5; versions: 1" in result.stderr


def test_a_model_named_at_latest_generates_with_the_newest_round_at_job_start(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    import shutil

    from model_store import ModelLineage

    store = ModelStore(tmp_path / "models")

    def store_round(name: str) -> None:
        shutil.copytree(tiny_model, tmp_path / name)
        store.register(name, tmp_path / name, kind="sft", lineage=ModelLineage())

    store_round("tiny-policy")
    store_round("tiny-policy-1")
    path = write_pipeline(tmp_path, tiny_model, seed_rows(2))
    models = []
    for newest in ("tiny-policy-1", "tiny-policy-2"):
        if not store.has(newest):
            store_round(newest)  # a new round, registered between two jobs
        loaded = load_spec(path, ["stages.1.engine.model=tiny-policy@latest"])
        report = run_job(prepare_job(loaded, registry, store), registry, log=lambda _: None)
        assert report.rows_failed == 0
        models.append(registry.open(report.outputs[0].ref).info.lineage.models)
    assert [m[0].split("#")[0] for m in models] == ["tiny-policy-1", "tiny-policy-2"]
