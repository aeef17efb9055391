"""IFEval on the held-out m-IFEval split (en, es, fr, ja): strict and loose, prompt and instruction.

Definitions (J. Zhou et al. 2023, arXiv:2311.07911, as in Google's evaluation code):

- **strict**: an instruction is followed when its checker accepts the response as it is (an
  empty or blank response follows nothing);
- **loose**: ... when its checker accepts any of eight variants: the response, without its
  first line, without its last line, without both, and each of those four with every `*`
  removed (markdown emphasis that breaks, e.g., "end with this phrase");
- **prompt-level** accuracy: the share of prompts whose instructions are all followed;
- **instruction-level** accuracy: the share of all instructions followed, pooled over prompts.

Checkers are judges/ifeval's. An instruction id judges/ifeval does not verify (4 held-out
Japanese prompts carry `ja:detectable_format:nominal_ending`) is left out of both levels and
listed in the item's record; a prompt left with no verifiable instruction is left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eval_sets import IFEvalItem, identity, load_ifeval
from evals.base import Generator, Metric, SuiteResult, mean_with_stderr
from evals.suites.common import first_reply, interleave, sampling_settings, user_turn
from judges.ifeval import UnsupportedInstructionError, check_instruction

DEFAULT_MAX_TOKENS = 512
LEVELS = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")


def loose_variants(response: str) -> list[str]:
    """The eight responses loose accuracy tries: first/last/both lines removed, `*` removed."""
    lines = response.split("\n")
    trimmed = [
        response,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return trimmed + [text.replace("*", "") for text in trimmed]


def _follows(check: Callable[[str], bool], candidates: Sequence[str]) -> bool:
    return any(text.strip() and check(text) for text in candidates)


def score_response(item: IFEvalItem, response: str) -> dict[str, Any]:
    """One prompt's record: per verifiable instruction, strict and loose verdicts.

    Returns:
        `instructions` (the verified ids), `strict` and `loose` (one bool each), and
        `unsupported` (ids left out because no checker verifies them).
    """
    variants = loose_variants(response)
    verified: list[str] = []
    strict: list[bool] = []
    loose: list[bool] = []
    unsupported: list[str] = []
    for instruction_id, kwargs in zip(item.instruction_ids, item.kwargs, strict=True):

        def check(text: str, instruction_id: str = instruction_id, kwargs: Any = kwargs) -> bool:
            return check_instruction(instruction_id, text, kwargs)

        try:
            strict.append(_follows(check, [response]))
        except UnsupportedInstructionError:
            unsupported.append(instruction_id)
            continue
        verified.append(instruction_id)
        loose.append(strict[-1] or _follows(check, variants))
    return {"instructions": verified, "strict": strict, "loose": loose, "unsupported": unsupported}


def ifeval_metrics(records: Sequence[dict[str, Any]]) -> list[Metric]:
    """Prompt- and instruction-level strict and loose accuracy, overall and per language.

    Records are `score_response` outputs with a `language`; those with no verified
    instruction are left out.
    """
    scored = [r for r in records if r["instructions"]]
    metrics = _levels(scored, "")
    for language in sorted({r["language"] for r in scored}):
        metrics += _levels([r for r in scored if r["language"] == language], f".{language}")
    return metrics


def _levels(records: Sequence[dict[str, Any]], suffix: str) -> list[Metric]:
    values = {
        "prompt_strict": [float(all(r["strict"])) for r in records],
        "prompt_loose": [float(all(r["loose"])) for r in records],
        "instruction_strict": [float(v) for r in records for v in r["strict"]],
        "instruction_loose": [float(v) for r in records for v in r["loose"]],
    }
    return [mean_with_stderr(level + suffix, values[level]) for level in LEVELS]


class IFEvalSuite:
    """IFEval strict/loose accuracy on the held-out m-IFEval prompts (425: en, es, fr, ja).

    Args:
        max_tokens: Reply length limit (default 512: some prompts ask for 300+ words).
        data_dir: The evaluation data folder (default: `ASSAY_EVAL_DATA` or ../shared/data).
        split: `test` (the held-out 425) or `dev` (159 others, for choices such as merge
            weights; eval_sets/splits/m_ifeval_dev.json).
    """

    name = "ifeval"

    def __init__(
        self, *, max_tokens: int | None = None, data_dir: Path | None = None, split: str = "test"
    ) -> None:
        self.max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        self.data_dir = data_dir
        self.split = split

    def run(self, generator: Generator, *, limit: int | None = None) -> SuiteResult:
        """Generate greedily for the prompts (the first `limit`, round-robin over languages) and score."""
        started = time.monotonic()
        items = interleave(
            load_ifeval(split=self.split, data_dir=self.data_dir), lambda item: item.language, limit
        )
        outcomes = generator.complete([user_turn(item.prompt) for item in items], max_tokens=self.max_tokens)
        records = []
        for item, outcome in zip(items, outcomes, strict=True):
            response, error = first_reply(outcome)
            record = {"id": item.id, "language": item.language, "response": response, "error": error}
            records.append(record | score_response(item, response))
        return SuiteResult(
            suite=self.name,
            eval_set=identity("ifeval", split=self.split, data_dir=self.data_dir),
            metrics=ifeval_metrics(records),
            items=records,
            wall_s=time.monotonic() - started,
            settings=sampling_settings(self.max_tokens, limit) | {"split": self.split},
        )
