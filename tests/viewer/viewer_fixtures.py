"""A small registry with one dataset of each shape the viewer draws, for the viewer's tests."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from datasets_registry import Lineage, Registry
from datasets_registry.kinds import MESSAGES_TYPE

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '[click](javascript:window.__pwned=3) <a href="javascript:window.__pwned=4">link</a>',
    '</pre></details><svg onload="window.__pwned=5">',
]


def _chat(i: int) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": f"Question {i}: what is {i} squared?"},
        {"role": "assistant", "content": f"It is {i * i}." + (" Long answer." * 80 if i % 7 == 0 else "")},
    ]


def _turns(role: str, content: str) -> list[dict[str, str]]:
    return [{"role": role, "content": content}]


def build_registry(root: Path, rows: int = 250) -> Registry:
    """A registry with `chat` (2 versions), `prefs`, `code`, `dead` and `hostile`."""
    # No stored digests: the diff page's two steps (versions a viewer has no digests of).
    registry = Registry(root, write_digests=False)
    langs = ["en", "fr", "de", "es"]
    base = {
        "id": [f"r{i:04d}" for i in range(rows)],
        "language": [langs[i % 4] for i in range(rows)],
        "messages": pa.array([_chat(i) for i in range(rows)], MESSAGES_TYPE),
        "scores": pa.array([{"ifeval": (i % 10) / 10, "length": float(i)} for i in range(rows)]),
        "turns": [2 + i % 3 for i in range(rows)],
    }
    first = registry.write("chat", pa.table(base), kind="sft", lineage=Lineage(job_id="job-seed"))
    second = dict(base)
    second["id"] = [f"r{i:04d}" for i in range(10, rows + 10)]
    second["messages"] = pa.array([_chat(i + 10) for i in range(rows)], MESSAGES_TYPE)
    second["scores"] = pa.array([{"ifeval": ((i + 3) % 10) / 10, "length": float(i)} for i in range(rows)])
    registry.write(
        "chat",
        pa.table(second),
        kind="sft",
        lineage=Lineage(
            job_id="job-rescore",
            pipeline="best_of_n",
            spec_hash="ab" * 32,
            models=["smollm2-135m-instruct#0123456789abcdef"],
            sources=[first.ref, "file:seeds/prompts.jsonl#sha256=" + "0" * 64],
        ),
    )
    registry.write(
        "prefs",
        pa.table(
            {
                "id": ["p0", "p1"],
                "prompt": pa.array(
                    [_turns("user", "Write a haiku."), _turns("user", "Say hi.")], MESSAGES_TYPE
                ),
                "chosen": pa.array(
                    [
                        _turns("assistant", "Autumn moonlight—\na worm digs silently"),
                        _turns("assistant", "Hi!"),
                    ],
                    MESSAGES_TYPE,
                ),
                "rejected": pa.array([_turns("assistant", "no"), _turns("assistant", "Bye.")], MESSAGES_TYPE),
                "chosen_score": [0.9, 0.7],
                "rejected_score": [0.1, 0.2],
            }
        ),
        kind="preference",
        lineage=Lineage(job_id="job-prefs", sources=["chat@2"]),
    )
    registry.write(
        "code",
        pa.table(
            {
                "id": ["c0"],
                "prompt": ["Add two numbers."],
                "language": ["python"],
                "tests": ["assert add(1, 2) == 3\nassert add(2, 2) == 5"],
                "solution": ["def add(a, b):\n    return a + b\n"],
                "verdict": [
                    json.dumps(
                        {
                            "status": "failed",
                            "passed": 1,
                            "total": 2,
                            "message": "",
                            "tests": [
                                {"name": "test_1", "passed": True, "message": ""},
                                {"name": "test_2", "passed": False, "message": "AssertionError: 4 != 5"},
                            ],
                        }
                    )
                ],
                "pass_rate": [0.5],
            }
        ),
        kind="code",
    )
    registry.write(
        "dead",
        pa.table(
            {
                "id": ["d0"],
                "job_id": ["job-rescore"],
                "stage": ["generate"],
                "error": ["PromptTooLongError: 9000 tokens > 2048"],
                "row": ['{"prompt": "very long"}'],
            }
        ),
    )
    # Bytes that are not UTF-8 sit in a binary column (Arrow checks strings are UTF-8).
    registry.write(
        "hostile",
        pa.table(
            {
                "id": [f"h{i}" for i in range(len(HOSTILE) + 1)],
                "text": [*HOSTILE, "plain"],
                "raw": pa.array([b"\xff\xfe<script>window.__pwned=6</script>\xc3"] * (len(HOSTILE) + 1)),
                "messages": pa.array(
                    [[{"role": "<b>user</b>", "content": h}] for h in [*HOSTILE, "ok"]], MESSAGES_TYPE
                ),
            }
        ),
    )
    return registry


def build_models(root: Path) -> None:
    """A model store with one fine-tuned checkpoint trained on `chat@2`, with metrics."""
    from model_store import ModelLineage, ModelStore

    folder = root.parent / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    lineage = ModelLineage(
        base_model="smollm2-135m-instruct#0123456789abcdef",
        datasets=["chat@2"],
        config={"lr": 1e-4},
        metrics={"train_loss": 1.25, "eval_ifeval": 0.42, "loss_curve": [2.0, 1.6, 1.4, 1.3, 1.25]},
        job_id="job-train",
    )
    store = ModelStore(root)
    store.register("sft-demo", folder, kind="sft", lineage=lineage)
    for day, (strict, loose) in enumerate([(0.31, 0.40), (0.36, 0.44), (0.42, 0.51)], start=1):
        store.add_eval("sft-demo", _eval_run("ifeval", f"2026-12-0{day}T10:00:00+00:00", strict, loose))
    xstest = _eval_run("xstest", "2026-12-03T11:00:00+00:00", 0.9, 0.2)
    xstest["metrics"][1].update(name=HOSTILE[0], higher_is_better=False)  # metric names are data
    store.add_eval("sft-demo", xstest)


def _eval_run(suite: str, created_at: str, first: float, second: float) -> dict:
    """A stored evaluation run as `ModelStore.add_eval` keeps it."""
    metrics = [
        {"name": "prompt_strict", "value": first, "stderr": 0.02, "n": 541, "higher_is_better": True},
        {"name": "prompt_loose", "value": second, "stderr": 0.021, "n": 541, "higher_is_better": True},
    ]
    return {"suite": suite, "eval_set": f"{suite}#sha256=ab12", "metrics": metrics, "created_at": created_at}
