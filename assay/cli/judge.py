"""`assay judge`: compare two models' (or two datasets') replies with a panel of LLM judges."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from assay.cli.common import console

app = typer.Typer(help="LLM judges: pairwise win rates.", no_args_is_help=True)


def _engine(model: str, base_url: str | None) -> dict[str, Any]:
    """An engine config: the OpenAI-compatible server at `base_url`, or hf on this machine."""
    if base_url:
        return {"backend": "openai", "model": model, "base_url": base_url, "api_key_env": None}
    return {"backend": "hf", "model": model, "batch_size": 8, "num_cpus": 0.5, "max_prompt_tokens": 4096}


def _dataset_rows(registry: Any, a: str, b: str) -> list[dict[str, Any]]:
    """Rows pairing two SFT datasets' replies by their prompt (the conversation before the reply)."""
    from assay.errors import AssayError

    def replies(ref: str) -> dict[str, tuple[list[dict[str, str]], str]]:
        rows = registry.open(ref).to_arrow().select(["messages"]).to_pylist()
        kept = [r["messages"] for r in rows if r["messages"] and r["messages"][-1]["role"] == "assistant"]
        return {json.dumps(m[:-1], sort_keys=True): (m[:-1], m[-1]["content"]) for m in kept}

    left, right = replies(a), replies(b)
    common = sorted(set(left) & set(right))
    if not common:
        raise AssayError(f"{a} and {b} share no prompt: nothing to compare")
    return [
        {"prompt_messages": left[k][0], "response_a": left[k][1], "response_b": right[k][1]} for k in common
    ]


@app.command("winrate")
def winrate(
    a: Annotated[
        str, typer.Argument(help="Model A (a stored name or HF folder), or with --datasets an SFT dataset.")
    ],
    b: Annotated[str, typer.Argument(help="Model B, or with --datasets an SFT dataset.")],
    judge: Annotated[list[str], typer.Option("--judge", help="A judge model; repeat for a panel.")],
    judge_system: Annotated[
        list[str] | None,
        typer.Option(help="A system message per judge, in --judge order (one model, two personas: a panel)."),
    ] = None,
    prompts: Annotated[
        str | None, typer.Option(help="Prompts `NAME@VERSION` with a `prompt` text column (model mode).")
    ] = None,
    datasets: Annotated[
        bool, typer.Option("--datasets", help="A and B are SFT datasets, paired by prompt.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts (model mode).")] = None,
    max_tokens: Annotated[int, typer.Option(help="Tokens per reply of A and B (model mode).")] = 128,
    judge_max_tokens: Annotated[int, typer.Option(help="Tokens per judge reply.")] = 128,
    judge_base_url: Annotated[
        str | None, typer.Option(help="Judges are served by this OpenAI-compatible server.")
    ] = None,
    template: Annotated[
        Path | None, typer.Option(help="Jinja2 judge template (prompt, response_a, response_b).")
    ] = None,
    panel: Annotated[str, typer.Option(help="majority or mean.")] = "majority",
    output: Annotated[str, typer.Option(help="Dataset to register the verdicts as.")] = "winrate-verdicts",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Win rate of A over B, (wins + 0.5 ties) / n with a 95 % bootstrap interval, its
    length-controlled value, and the judges' position consistency; the verdicts are registered."""
    import yaml

    from assay.cli.common import open_model_store, open_registry
    from assay.errors import AssayError
    from datagen.job import prepare_job, run_job
    from datagen.spec import load_spec
    from judges.llm_judge import length_controlled_win_rate, win_rate

    registry = open_registry()
    judge_stage: dict[str, Any] = {
        "type": "pairwise_judge",
        "name": "judge",
        "judges": [
            {
                "name": f"{j}#{n}",
                "engine": _engine(j, judge_base_url),
                "system": (judge_system or [])[n] if n < len(judge_system or []) else None,
            }
            for n, j in enumerate(judge)
        ],  # fmt: skip
        "panel": panel,
        "sampling": {"n": 1, "temperature": 0.0, "max_tokens": judge_max_tokens},
    }
    if template:
        judge_stage["template"] = str(template.resolve())
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if datasets:
            rows = _dataset_rows(registry, a, b)
            (work / "pairs.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
            source: dict[str, Any] = {"path": "pairs.jsonl"}
            stages = [judge_stage]
        else:
            if not prompts:
                raise AssayError("--prompts NAME@VERSION is needed to compare two models")
            (work / "prompt.j2").write_text("{{ prompt }}")
            sampling = {"n": 1, "temperature": 0.0, "max_tokens": max_tokens}
            source = {"dataset": prompts, **({"limit": limit} if limit else {})}
            stages = [
                {"type": "render", "name": "render", "template": "prompt.j2"},
                {"type": "generate", "name": "model-a", "engine": _engine(a, None), "sampling": sampling,
                 "output": "response_a"},
                {"type": "generate", "name": "model-b", "engine": _engine(b, None), "sampling": sampling,
                 "output": "response_b"},
                judge_stage,
            ]  # fmt: skip
        spec = {"name": "judge-winrate", "source": source, "stages": stages,
                "outputs": [{"dataset": output, "kind": "generic"}]}  # fmt: skip
        (work / "winrate.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
        job = prepare_job(load_spec(work / "winrate.yaml"), registry, open_model_store())
        report = run_job(job, registry, log=lambda line: None)
    if not report.outputs:
        raise AssayError(f"no verdicts: all {report.rows_in} rows failed (see judge-winrate-dead-letter)")
    ref = report.outputs[0].ref
    table = (
        registry.open(ref)
        .to_arrow()
        .select(["verdict", "length_a", "length_b", "judge_verdicts"])
        .to_pylist()
    )
    outcomes = [r["verdict"] for r in table]
    rate = win_rate(outcomes)
    lc = length_controlled_win_rate(outcomes, [r["length_a"] for r in table], [r["length_b"] for r in table])
    verdicts = [v for r in table for v in r["judge_verdicts"]]
    consistency = sum(v["consistent"] for v in verdicts) / len(verdicts)
    result = {
        "a": a, "b": b, "verdicts": ref, "n": rate.n, "wins": rate.wins, "ties": rate.ties,
        "losses": rate.losses, "win_rate": round(rate.rate, 4),
        "ci95": [round(rate.low, 4), round(rate.high, 4)], "length_controlled_win_rate": round(lc, 4),
        "position_consistency": round(consistency, 4), "failed_rows": report.rows_failed,
    }  # fmt: skip
    if json_out:
        console.print_json(json.dumps(result))
        return
    console.print(f"{a} vs {b}: {rate.n} prompts, {rate.wins} wins, {rate.ties} ties, {rate.losses} losses")
    console.print(
        f"win rate {rate.rate:.3f} (95 % CI {rate.low:.3f}-{rate.high:.3f}), length-controlled {lc:.3f}"
    )
    console.print(f"position consistency {consistency:.3f}; verdicts registered as {ref}")
