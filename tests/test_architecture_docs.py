"""docs/architecture.md's worked examples run: a stage added in one module with one
registration line runs in a real job, and a recipe added the same way expands to it."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from datagen.recipes.registry import registered_recipes, unregister_recipe
from datagen.stages.registry import registered_stages, unregister_stage

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


@pytest.fixture
def clean_registries() -> Iterator[None]:
    stages, recipes = set(registered_stages()), set(registered_recipes())
    yield
    for name in set(registered_stages()) - stages:
        unregister_stage(name)
    for name in set(registered_recipes()) - recipes:
        unregister_recipe(name)


def test_architecture_docs_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_local: None, clean_registries: None
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "architecture_docs"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"{DOC.name} example {number}", "exec"), namespace)  # noqa: S102
    assert "shout" in registered_stages() and "shout_twice" in registered_recipes()


def test_a_stage_type_cannot_be_registered_twice(clean_registries: None) -> None:
    from typing import Literal

    from datagen.stages import StageSpec, register_stage
    from datagen.stages.base import Row, RowStage

    class EchoSpec(StageSpec):
        type: Literal["render"] = "render"

    class Echo(RowStage[EchoSpec]):
        spec_class = EchoSpec

        def process_row(self, row: Row) -> Row:
            return row

    with pytest.raises(TypeError, match="'render' is already registered by RenderStage"):
        register_stage(Echo)

    class UntypedSpec(StageSpec):
        pass

    Echo.spec_class = UntypedSpec
    with pytest.raises(TypeError, match="must be one Literal string"):
        register_stage(Echo)
