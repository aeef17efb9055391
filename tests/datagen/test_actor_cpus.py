"""The job's CPU check counts every stage's actor pool (generate, score, sandbox stages, judges):
a plan whose pools leave Ray too few CPUs for one of its tasks is refused before anything runs,
in one line naming the stages, instead of waiting forever."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from assay.errors import AssayError
from datagen.job import check_actor_cpus, prepare_job, run_job
from datagen.spec import load_spec
from datagen.stages.execute import ExecuteStage, ExecuteStageSpec
from datasets_registry import Registry
from model_store import ModelStore

ROWS = [
    {"prompt": f"Write a function that adds {i}.", "language": "python", "tests": "assert True"}
    for i in range(2)
]


@pytest.fixture(scope="module")
def reward_model_folder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel

    folder = tmp_path_factory.mktemp("cpus-rm") / "rm"
    RewardModel.from_backbone(tiny_model, seed=1).save(folder, AutoTokenizer.from_pretrained(tiny_model))
    return folder


def write_spec(tmp_path: Path, source: dict, stages: list[dict]) -> Path:
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(row) for row in ROWS))
    (tmp_path / "t.j2").write_text("{{ prompt }}")
    spec = {
        "name": "cpus",
        "source": source,
        "stages": [{"type": "render", "name": "render", "template": "t.j2"}, *stages],
        "outputs": [{"dataset": "cpus-out", "kind": "generic"}],
        "ray": {"num_cpus": 2},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def generate(model: Path, num_cpus: float) -> dict:
    engine = {"model": str(model), "num_cpus": num_cpus, "torch_threads": 1}
    return {"type": "generate", "name": "generate", "engine": engine, "sampling": {"max_tokens": 2}}


def test_stages_that_together_reserve_too_many_cpus_are_refused_in_one_line(
    tmp_path: Path, tiny_model: Path, reward_model_folder: Path, ray_local: None
) -> None:
    # A 1-CPU teacher and a 1-CPU reward model fill a 2-CPU Ray: no CPU is left for the light
    # stages' tasks, so Ray Data would wait forever (the check used to count generate stages only).
    stages = [
        generate(tiny_model, 1.0),
        {"type": "score", "name": "reward", "model": str(reward_model_folder), "completion": "completions",
         "output": "rewards", "per_completion": True, "num_cpus": 1.0},
        {"type": "execute", "name": "execute", "actors": 2},
    ]  # fmt: skip
    spec = write_spec(tmp_path, {"path": "rows.jsonl"}, stages)
    registry = Registry(tmp_path / "registry")
    job = prepare_job(load_spec(spec), registry, ModelStore(tmp_path / "m"))
    with pytest.raises(AssayError) as refused:
        run_job(job, registry, log=print)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "the stages' actors reserve 2.2 CPUs (generate: 1, reward: 1, execute: 0.2) but Ray has 2"
    )
    assert registry.names() == []  # refused before anything ran


def test_a_dataset_source_keeps_a_whole_cpu_free_for_its_read_tasks(
    tmp_path: Path, tiny_model: Path, ray_local: None
) -> None:
    registry = Registry(tmp_path / "registry")
    registry.write("prompts", pa.Table.from_pylist(ROWS), kind="generic")
    on_file = prepare_job(
        load_spec(write_spec(tmp_path, {"path": "rows.jsonl"}, [generate(tiny_model, 1.5)])),
        registry,
        ModelStore(tmp_path / "m"),
    )
    check_actor_cpus(on_file.stages, on_file.source)  # 0.5 CPU left holds the light 0.1-CPU tasks
    on_dataset = prepare_job(
        load_spec(write_spec(tmp_path, {"dataset": "prompts@1"}, [generate(tiny_model, 1.5)])),
        registry,
        ModelStore(tmp_path / "m"),
    )
    with pytest.raises(AssayError, match=r"a read of the source dataset needs 1 of them free"):
        check_actor_cpus(on_dataset.stages, on_dataset.source)


def test_every_stage_reports_the_cpus_its_actors_reserve() -> None:
    execute = ExecuteStage(ExecuteStageSpec(name="execute", actors=3))
    assert (execute.concurrency, execute.actor_cpus) == (3, 0.1)
    assert execute.reserved_cpus == pytest.approx(0.3)
    from datagen.stages.select import BestOfNStage, BestOfNStageSpec

    assert BestOfNStage(BestOfNStageSpec()).reserved_cpus == 0  # short Ray tasks only
