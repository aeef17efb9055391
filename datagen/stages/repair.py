"""Repair with execution feedback: a failing program, its verdict, the model's fix, up to K rounds.

The recipe `code_repair` unrolls the rounds into ordinary stages, so every model call goes
through `generate` (cache, accounting, teacher pools) and every program through `execute` (the
sandbox):

    render -> generate -> execute
    -> repair_feedback (round 1) -> generate (routed to rows that need a fix) -> execute
    -> ... (round K) -> repair_select

`repair_feedback` keeps a trajectory per row in a JSON column: the user's problem, the failing
program, a user turn with the sandbox's feedback (the status, the compiler's or the crash's
message, the failed tests and their messages, cut to `feedback_chars`), then each fix. A row
whose first attempt already passed, or that has nothing to repair (no attempt wrote code),
is routed past the model. `repair_select` folds in the last round and writes the
multi-turn conversation as SFT data when the last program passes every test, and the fixed
program against the first broken one as a preference pair.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowStage, StageSpec, finished_rows
from datagen.stages.registry import register_stage
from datasets_registry.kinds import MESSAGES_TYPE

REPAIR, DONE = "repair", "done"


def feedback(verdict: dict[str, Any], budget: int, max_tests: int = 5) -> str:
    """The sandbox's verdict as a user turn: what failed and why, at most `budget` characters."""
    status = verdict.get("status", "")
    lines = [f"Your program did not pass the tests (status: {status}, {verdict.get('passed', 0)} of "
             f"{verdict.get('total', 0)} tests passed)."]  # fmt: skip
    if verdict.get("message"):
        lines.append(f"Output:\n{verdict['message'].strip()}")
    failed = [t for t in verdict.get("tests") or [] if not t.get("passed")]
    for test in failed[:max_tests]:
        lines.append(
            f"Failed: {test.get('name')}" + (f": {test['message'].strip()}" if test.get("message") else "")
        )
    if len(failed) > max_tests:
        lines.append(f"... and {len(failed) - max_tests} more failed tests.")
    lines.append("Fix the program. Answer with the complete corrected program in one code block.")
    text = "\n".join(lines)
    return text if len(text) <= budget else text[: budget - 20].rstrip() + "\n... [cut]"


def _best(completions: list[Any], verdicts: list[dict[str, Any]]) -> int | None:
    """The attempt to carry on from: the highest pass rate among those that wrote code."""
    scored = [
        (v.get("passed", 0) / v["total"] if v.get("total") else 0.0, -i)
        for i, v in enumerate(verdicts)
        if v.get("status") not in ("no_code", "invalid_input", "sandbox_error")
    ]
    return -max(scored)[1] if scored else None


def _text(completion: Any) -> str:
    return completion["text"] if isinstance(completion, dict) else str(completion)


def fold(state: dict[str, Any], completions: list[Any], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add a round's best fix to a trajectory that was waiting for one."""
    if state["done"]:
        return state
    best = _best(completions or [], verdicts or [])
    if best is None:  # the model answered without code: the trajectory ends unfixed
        return {**state, "done": True}
    verdict = verdicts[best]
    turns = [*state["turns"], {"role": "assistant", "content": _text(completions[best])}]
    passed = verdict.get("status") == "passed"
    return {**state, "turns": turns, "rounds": state["rounds"] + 1, "passed": passed, "done": passed,
            "last_verdict": verdict}  # fmt: skip


class RepairFeedbackStageSpec(StageSpec):
    """One repair round's input: the trajectory so far plus the sandbox's feedback as a user turn."""

    type: Literal["repair_feedback"] = "repair_feedback"
    prompt: str = Field("prompt_messages", description="Column with the problem conversation.")
    completions: str = Field("completions", description="Column with the previous round's programs.")
    verdicts: str = Field("completion_verdicts", description="Column with the previous round's verdicts.")
    state_in: str | None = Field(None, description="Trajectory column of the previous round (null: round 1).")
    state_out: str = Field("repair_state", description="Column for the trajectory (JSON).")
    output: str = Field("repair_messages", description="Column for the conversation the model continues.")
    route: str = Field("repair_route", description="Column saying `repair` (ask the model) or `done`.")
    feedback_chars: int = Field(1500, ge=200, description="Longest feedback turn, in characters.")


@register_stage
class RepairFeedbackStage(RowStage[RepairFeedbackStageSpec]):
    """Start or continue each row's repair trajectory and route the rows that still fail."""

    spec_class = RepairFeedbackStageSpec

    def __init__(self, spec: RepairFeedbackStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = tuple(c for c in (spec.prompt, spec.completions, spec.verdicts, spec.state_in) if c)
        self.writes = {spec.state_out: pa.string(), spec.output: MESSAGES_TYPE, spec.route: pa.string()}

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        completions, verdicts = row[spec.completions] or [], row[spec.verdicts] or []
        if len(completions) != len(verdicts):
            raise ValueError(f"{len(completions)} programs but {len(verdicts)} verdicts")
        if spec.state_in is None:
            state = self._start(row[spec.prompt], completions, verdicts)
        else:
            state = fold(json.loads(row[spec.state_in]), completions, verdicts)
            if not state["done"]:
                turn = feedback(state.pop("last_verdict"), spec.feedback_chars)
                state["turns"] = [*state["turns"], {"role": "user", "content": turn}]
        state.pop("last_verdict", None)
        return {
            spec.state_out: json.dumps(state),
            spec.output: state["turns"] if not state["done"] else None,
            spec.route: DONE if state["done"] else REPAIR,
        }

    def _start(
        self, prompt: list[dict[str, str]], completions: list[Any], verdicts: list[dict]
    ) -> dict[str, Any]:
        if any(v.get("status") == "invalid_input" for v in verdicts) and all(
            v.get("status") in ("invalid_input", "no_code") for v in verdicts
        ):
            raise ValueError(f"the problem cannot be judged: {verdicts[0].get('message')}")
        state: dict[str, Any] = {"prompt": prompt, "turns": list(prompt), "rounds": 0, "passed": False,
                                 "done": True, "broken": None}  # fmt: skip
        if any(v.get("status") == "passed" for v in verdicts):
            return {**state, "first_passed": True}
        best = _best(completions, verdicts)
        if best is None:  # nothing to repair: no attempt wrote code
            return state
        broken = {"role": "assistant", "content": _text(completions[best])}
        turn = {"role": "user", "content": feedback(verdicts[best], self.spec.feedback_chars)}
        return {**state, "turns": [*prompt, broken, turn], "done": False, "broken": broken}


class RepairSelectStageSpec(StageSpec):
    """Finish the trajectories: multi-turn SFT rows that end passing, fixed-vs-broken pairs."""

    type: Literal["repair_select"] = "repair_select"
    state_in: str = Field("repair_state", description="Trajectory column of the last round.")
    completions: str = Field("repair_completions", description="Column with the last round's programs.")
    verdicts: str = Field("completion_verdicts", description="Column with the last round's verdicts.")


@register_stage
class RepairSelectStage(RowStage[RepairSelectStageSpec]):
    """Writes `messages` (the whole trajectory, only when its last program passes after at least one
    fix), `prompt`/`chosen`/`rejected` (the fix against the first broken program) and `scores`."""

    spec_class = RepairSelectStageSpec

    def __init__(self, spec: RepairSelectStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = (spec.state_in, spec.completions, spec.verdicts)
        self.writes = {
            "prompt": MESSAGES_TYPE,
            "messages": MESSAGES_TYPE,
            "chosen": MESSAGES_TYPE,
            "rejected": MESSAGES_TYPE,
            "scores": pa.struct(
                [("repair_rounds", pa.int64()), ("repaired", pa.bool_()), ("first_passed", pa.bool_())]
            ),  # fmt: skip
        }

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        state = fold(json.loads(row[spec.state_in]), row[spec.completions] or [], row[spec.verdicts] or [])
        repaired = bool(state["passed"] and state["rounds"] >= 1 and state.get("broken"))
        fixed = [state["turns"][-1]] if repaired else None
        return {
            "prompt": state["prompt"],
            "messages": state["turns"] if repaired else None,
            "chosen": fixed,
            "rejected": [state["broken"]] if repaired else None,
            "scores": {
                "repair_rounds": state["rounds"],
                "repaired": repaired,
                "first_passed": bool(state.get("first_passed")),
            },  # fmt: skip
        }

    def metrics(self, result: Any) -> dict[str, Any]:
        """Rows, those whose first attempt already passed, trajectories repaired (by the number
        of fix rounds they took; each is an SFT row and a pair) and those left failing."""
        rounds: Counter[int] = Counter()
        rows = first_passed = unrepaired = 0
        for row in finished_rows(result, ["scores"]):
            rows += 1
            scores = row["scores"]
            if scores["first_passed"]:
                first_passed += 1
            elif scores["repaired"]:
                rounds[scores["repair_rounds"]] += 1
            else:
                unrepaired += 1
        return {"rows": rows, "first_passed": first_passed, "repaired": sum(rounds.values()),
                "repaired_by_rounds": {str(k): v for k, v in sorted(rounds.items())},
                "not_repaired": unrepaired}  # fmt: skip
