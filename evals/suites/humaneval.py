"""HumanEval (Chen et al. 2021, arXiv 2107.03374): does the model's function pass the problem's tests?

Each of the 164 problems is a Python function signature with its docstring. The `dev` split
(`split="dev"`, for choices such as the loop's merge weights; the test split only reports) is
87 of MBPP's 90 validation problems posed the same way (eval_sets.humaneval_dev). The model
gets one chat message asking for the function; its reply's fenced Python block (or the raw
reply when it has none) becomes the program, built as HumanEval builds it: the prompt
followed by the completion when the reply is the function's body, or the prompt's imports and
helpers followed by the reply when it restates the whole function. The program runs in the
sandbox against the problem's `check(entry_point)` (one program per sample, a wall-clock limit
per program).

Metrics: `pass@1`, greedy (temperature 0, one sample), and with `samples` > 0, `pass@K_sampled`
for each K in `k`, from `samples` replies per problem at `temperature`, by the unbiased
estimator of Chen et al. (eq. 1). Each is a mean over problems with its standard error.
"""

from __future__ import annotations

import ast
import math
import re
import textwrap
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from assay.config import StrictModel
from eval_sets import HumanEvalItem, identity, load_humaneval
from eval_sets.loaders import SPLIT_NAMES
from evals.base import EvalError, Generator, SuiteResult, mean_with_stderr
from sandbox import Limits, Sandbox
from sandbox.config import SandboxConfig
from sandbox.extract import code_blocks
from sandbox.verdict import Verdict
from sandbox.verify import Job, verify_many

PROMPT_TEMPLATE = (
    "Complete the following Python function. Reply with the complete function, including its "
    "signature, in one Python code block.\n\n```python\n{prompt}```"
)
ERROR_CHARS = 300  # the error summary kept per item
PYTHON_TAGS = ("python", "py", "python3")


class HumanEvalSettings(StrictModel):
    """How HumanEval is run: sampling for pass@k, generation length, sandbox limits."""

    max_tokens: int = Field(512, ge=1, description="Tokens generated per reply.")
    samples: int = Field(
        0, ge=0, description="Replies per problem for pass@k (0: greedy pass@1 only); n of the estimator."
    )
    k: list[int] = Field(
        default_factory=lambda: [1, 10], description="The k of each pass@k reported from `samples` replies."
    )
    temperature: float = Field(0.8, gt=0, description="Sampling temperature of the pass@k replies.")
    seed: int = Field(0, description="Seed of the sampled replies.")
    timeout_s: float = Field(20.0, gt=0, description="Wall-clock seconds per program in the sandbox.")
    memory_mb: int = Field(512, ge=64, description="Memory of each program in the sandbox.")
    sandbox: SandboxConfig = Field(
        default_factory=SandboxConfig, description="The sandbox the programs run in (backend, pool size)."
    )

    @model_validator(mode="after")
    def _k_within_samples(self) -> HumanEvalSettings:
        if self.samples and any(k < 1 or k > self.samples for k in self.k):
            raise ValueError(f"every k must be between 1 and samples ({self.samples}); got {self.k}")
        return self


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from `n` samples of which `c` passed.

    pass@k = 1 - C(n - c, k) / C(n, k) (Chen et al. 2021, arXiv 2107.03374, eq. 1): the chance
    that at least one of k samples drawn without replacement from the n passes. Computed as the
    product 1 - prod_{i = n - c + 1}^{n} (1 - k / i), which avoids huge binomials.

    Raises:
        ValueError: not 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k samples holds a passing one
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def extract_program_text(reply: str) -> str:
    """The code of a reply: its longest fenced Python (or untagged) block, else the reply itself."""
    blocks = code_blocks(reply)
    chosen = [b for b in blocks if b.tag in PYTHON_TAGS] or [b for b in blocks if not b.tag]
    chosen = [b for b in chosen if b.code.strip()]
    if chosen:
        return max(chosen, key=lambda b: len(b.code)).code
    return reply


def _parse(code: str) -> ast.Module:
    """The code's tree, without warnings about its own strings (a regex's `\\.` in a plain one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(code)


def _defines(code: str, name: str) -> bool:
    """Whether `code` defines the function `name` at its top level."""
    try:
        tree = _parse(code)
    except SyntaxError:
        return re.search(rf"^(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name for node in tree.body
    )


_KEPT_STATEMENTS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)


def drop_top_level_scripts(code: str) -> str:
    """`code` without its top-level statements other than imports, definitions and assignments.

    Replies often end with a usage example (`print(f(3))`, `assert f(1) == 2`, an `if __name__
    == "__main__":` block); run before the tests, a wrong example would fail a right function
    and a slow one would eat its time. Code that does not parse is kept as it is (the sandbox
    then reports the syntax error).
    """
    try:
        tree = _parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines(keepends=True)
    dropped = [node for node in tree.body if not isinstance(node, _KEPT_STATEMENTS)]
    if not dropped:
        return code
    keep = [True] * len(lines)
    for node in dropped:
        for line in range(node.lineno - 1, node.end_lineno or node.lineno):
            keep[line] = False
    return "".join(line for line, kept in zip(lines, keep, strict=True) if kept)


def build_program(item: HumanEvalItem, reply: str) -> str:
    """The program HumanEval runs for a reply: prompt + completion, or prompt + restated function.

    A reply that defines `entry_point` itself restates the function: it follows the whole prompt
    (whose imports and helper functions it may use), so its definition replaces the prompt's
    body-less one. Otherwise the reply is the function's body and follows the prompt directly;
    a body written flush left is indented under the signature.
    """
    code = extract_program_text(reply)
    if _defines(code, item.entry_point):
        return drop_top_level_scripts(item.prompt + "\n\n" + code)
    body = code.strip("\n")
    first = next((line for line in body.splitlines() if line.strip()), "")
    if first and not first[0].isspace():
        body = textwrap.indent(body, "    ")
    return drop_top_level_scripts(item.prompt + body + "\n")


def error_summary(verdict: Verdict) -> str:
    """Why a program failed, in one short line: the verdict's message or its first failed test."""
    if verdict.status == "passed":
        return ""
    failed = [t for t in verdict.tests if not t.passed]
    detail = verdict.message or (f"{failed[0].name}: {failed[0].message}" if failed else "")
    text = f"{verdict.status}: {detail}".strip().rstrip(":")
    text = " ".join(text.split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


class HumanEvalSuite:
    """HumanEval pass@1 (greedy) and optionally pass@k, every program run in the sandbox.

    Built with keyword options only (as `evals.run.build_suite` passes them); each one given
    overrides the same field of `settings`.

    Args:
        max_tokens: Tokens per reply (default 512).
        data_dir: Where the evaluation data lives (default `assay.settings.eval_data_dir()`).
        samples: Replies per problem for pass@k (default 0: greedy pass@1 only).
        k: The k of each pass@k (default [1, 10]; each at most `samples`).
        temperature: Sampling temperature of the pass@k replies (default 0.8).
        timeout_s: Wall-clock seconds per program in the sandbox (default 20).
        split: `test` (the 164 HumanEval problems) or `dev` (87 MBPP validation problems, for
            choices such as merge weights; eval_sets/splits/humaneval_dev.json).
        settings: All of the above and the sandbox's configuration at once.
        sandbox: A sandbox to run the programs in (left open); None opens one per run.

    Raises:
        EvalError: An invalid option (k above samples, a negative count, an unknown split).
    """

    name = "humaneval"

    def __init__(
        self,
        *,
        max_tokens: int | None = None,
        data_dir: Path | None = None,
        samples: int | None = None,
        k: Sequence[int] | None = None,
        temperature: float | None = None,
        timeout_s: float | None = None,
        split: str = "test",
        settings: HumanEvalSettings | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        if split not in SPLIT_NAMES:
            raise EvalError(f"humaneval: no split {split!r}; splits: {', '.join(SPLIT_NAMES)}")
        self.split = split
        given = {"max_tokens": max_tokens, "samples": samples, "k": k, "temperature": temperature,
                 "timeout_s": timeout_s}  # fmt: skip
        overrides = {name: value for name, value in given.items() if value is not None}
        base = settings or HumanEvalSettings()
        try:
            self.settings = HumanEvalSettings.model_validate(base.model_dump() | overrides)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in err.errors()
            )
            raise EvalError(f"humaneval: {problems}") from None
        self.sandbox = sandbox
        self.data_dir = data_dir

    def run(self, generator: Generator, *, limit: int | None = None) -> SuiteResult:
        """Evaluate the generator's model on the first `limit` problems of the split (all by default)."""
        if limit is not None and limit < 1:
            raise EvalError(f"--limit must be at least 1, got {limit}")
        started = time.monotonic()
        items = load_humaneval(split=self.split, data_dir=self.data_dir)[:limit]
        settings = self.settings
        conversations = [
            [{"role": "user", "content": PROMPT_TEMPLATE.format(prompt=item.prompt)}] for item in items
        ]
        greedy = generator.complete(conversations, n=1, temperature=0.0, max_tokens=settings.max_tokens)
        sampled: list[list[str] | Exception] = []
        if settings.samples:
            sampled = generator.complete(
                conversations,
                n=settings.samples,
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
                seed=settings.seed,
            )
        replies = [_replies(item, out, 1) for item, out in zip(items, greedy, strict=True)]
        sample_replies = (
            [_replies(item, out, settings.samples) for item, out in zip(items, sampled, strict=True)]
            if settings.samples
            else []
        )
        verdicts = self._verify(items, replies + sample_replies)
        greedy_verdicts, sample_verdicts = verdicts[: len(items)], verdicts[len(items) :]

        records: list[dict[str, Any]] = []
        scores: list[float] = []
        for item, reply, item_verdicts, out in zip(items, replies, greedy_verdicts, greedy, strict=True):
            verdict = item_verdicts[0]
            passed = verdict is not None and verdict.status == "passed"
            scores.append(float(passed))
            records.append(
                {
                    "id": item.id,
                    "completion": reply[0],
                    "passed": passed,
                    "status": verdict.status if verdict else "generation_error",
                    "error": error_summary(verdict) if verdict else _clip(f"generation failed: {out}"),
                }
            )
        metrics = [mean_with_stderr("pass@1", scores)]
        if settings.samples:
            counts = [sum(v is not None and v.status == "passed" for v in vs) for vs in sample_verdicts]
            for record, c in zip(records, counts, strict=True):
                record["sampled_passed"] = c
            for k in settings.k:
                values = [pass_at_k(settings.samples, c, k) for c in counts]
                metrics.append(mean_with_stderr(f"pass@{k}_sampled", values))
        statuses = [r["status"] for r in records]
        return SuiteResult(
            suite=self.name,
            eval_set=identity("humaneval", split=self.split, data_dir=self.data_dir),
            metrics=metrics,
            items=records,
            wall_s=time.monotonic() - started,
            settings={
                "limit": limit,
                "split": self.split,
                "sampling": {"n": 1, "temperature": 0.0, "max_tokens": settings.max_tokens},
                "pass_at_k": (
                    {
                        "samples": settings.samples,
                        "k": settings.k,
                        "temperature": settings.temperature,
                        "seed": settings.seed,
                    }
                    if settings.samples
                    else None
                ),
                "timeout_s": settings.timeout_s,
                "problems": len(items),
                "generation_errors": statuses.count("generation_error"),
                "sandbox_errors": statuses.count("sandbox_error"),
            },
        )

    def _verify(
        self, items: Sequence[HumanEvalItem], replies: Sequence[list[str | None]]
    ) -> list[list[Verdict | None]]:
        """Verdicts of every reply (None where generation failed), in the shape of `replies`."""
        problems = list(items) * (len(replies) // max(1, len(items)))
        jobs, where = [], []
        for row, (item, texts) in enumerate(zip(problems, replies, strict=True)):
            tests = f"{item.test}\ncheck({item.entry_point})\n"
            for column, text in enumerate(texts):
                if text is not None:
                    jobs.append(Job("python", build_program(item, text), tests, extract=False))
                    where.append((row, column))
        out: list[list[Verdict | None]] = [[None] * len(texts) for texts in replies]
        if not jobs:
            return out
        limits = Limits(wall_timeout_s=self.settings.timeout_s, memory_mb=self.settings.memory_mb)
        sandbox = self.sandbox
        if sandbox is None:
            from sandbox import open_sandbox

            sandbox = open_sandbox(self.settings.sandbox)
        try:
            workers = sandbox.config.pool_size if hasattr(sandbox, "config") else 4
            verdicts = verify_many(sandbox, jobs, workers=workers, limits=limits)
            # A failure of the sandbox itself is never the program's fault: try those once more.
            retry = [i for i, v in enumerate(verdicts) if v.status == "sandbox_error"]
            again = verify_many(sandbox, [jobs[i] for i in retry], limits=limits)
            for i, verdict in zip(retry, again, strict=True):
                verdicts[i] = verdict
        finally:
            if self.sandbox is None:
                sandbox.close()
        for (row, column), verdict in zip(where, verdicts, strict=True):
            out[row][column] = verdict
        return out


def _replies(item: HumanEvalItem, out: list[str] | Exception, n: int) -> list[str | None]:
    """`n` reply texts for an item, None for each when its generation failed."""
    if isinstance(out, Exception):
        return [None] * n
    if len(out) != n:
        raise EvalError(f"{item.id}: the generator returned {len(out)} replies, asked for {n}")
    return list(out)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."
