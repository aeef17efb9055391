"""`assay judge winrate --datasets`: two SFT datasets paired by prompt, judged by a panel served
by an OpenAI-compatible server (the fake one stands in for a hosted judge); the win rate, its
interval and the position consistency are printed and the verdicts registered as a dataset."""

import json
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from datasets_registry import Registry
from datasets_registry.kinds import MESSAGES_TYPE

sys.path.insert(0, str(Path(__file__).parents[1] / "datagen"))
from openai_server import FakeOpenAIServer  # noqa: E402

TEMPLATE = (
    "{% if 'good' in response_a %}[[A]]{% elif 'good' in response_b %}[[B]]{% else %}[[TIE]]{% endif %}"
)


def sft(registry: Registry, name: str, replies: list[str]) -> None:
    rows = [
        {
            "id": f"{name}-{i}",
            "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": r}],
        }
        for i, r in enumerate(replies)
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("messages", MESSAGES_TYPE)]))
    registry.write(name, table, kind="sft")


@pytest.mark.slow  # a Ray job (~30 s); the judge logic itself is tested fast in test_llm_judge.py
def test_winrate_of_two_datasets(tmp_path: Path, ray_local: None) -> None:
    from assay.cli.main import app

    registry = Registry(tmp_path / "registry")
    sft(registry, "ours", ["good a", "good b", "same", "bad"])
    sft(registry, "theirs", ["meh", "meh", "same", "good d"])
    (tmp_path / "judge.j2").write_text(TEMPLATE)
    with FakeOpenAIServer(models=["judge"]) as server:
        result = CliRunner().invoke(
            app,
            ["--registry", str(tmp_path / "registry"), "judge", "winrate", "ours@1", "theirs@1", "--datasets",
             "--judge", "judge", "--judge-base-url", server.base_url,
             "--template", str(tmp_path / "judge.j2"), "--output", "ours-vs-theirs", "--json"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["wins"], report["ties"], report["losses"]) == (2, 1, 1)
    assert report["win_rate"] == 0.625 and report["ci95"][0] <= 0.625 <= report["ci95"][1]
    assert report["position_consistency"] == 1.0
    verdicts = registry.open("ours-vs-theirs@1").to_arrow().to_pylist()
    assert sorted(v["verdict"] for v in verdicts) == ["a", "a", "b", "tie"]
