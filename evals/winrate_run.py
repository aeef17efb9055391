"""Run a reward-model win rate of a model against a reference: prompts, both engines, storage.

    prompts = ifeval_prompts(limit=50)            # or dataset_prompts(registry.open("p@1"))
    done = run_win_rate("expert", "start", "rm-small", prompts, max_tokens=256)
    done.report.win_rate, done.run.stored

The statistic is evals/winrate.py's (`reward_win_rate`); this module picks the held-out prompts,
builds both models' generators the way `evaluate_model` does (evals.generation: datagen's
engines and the LLM-call cache, greedy, batched), scores with `reward_model.score.RewardScorer`
and stores the result with the model as the suite `winrate-vs-REF`, so `assay models show` and
`assay eval compare` see it. Everything that can be refused (a model, the reward model, the
dataset, its prompt column) is checked before a model loads.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.base import Conversation, EvalError, SuiteResult
from evals.results import store_result
from evals.run import SuiteRun, concrete_name
from evals.suites.common import interleave, sampling_settings, user_turn
from evals.winrate import WinRateReport, reward_win_rate
from model_store import ModelStore, ModelStoreError

if TYPE_CHECKING:
    from datasets_registry import DatasetVersion
    from evals.generation import EngineGenerator
    from reward_model.score import RewardScorer

DEFAULT_MAX_TOKENS = 512
PROMPT_COLUMNS = ("prompt", "messages")
"""Where a dataset's prompts are: `prompt` (text or messages: prompts, preference, rm_pairs,
code, ... kinds), else `messages` (sft: the conversation up to its last user turn)."""


@dataclass
class PromptSet:
    """Held-out prompts: conversations, an id for each, and which set they are (for lineage)."""

    conversations: list[Conversation]
    ids: list[str]
    eval_set: str
    source: str


def ifeval_prompts(limit: int | None = None, *, data_dir: Path | None = None) -> PromptSet:
    """The held-out m-IFEval test prompts (evaluation only), round-robin over languages.

    Raises:
        EvalDataError: The evaluation data is missing.
    """
    from eval_sets import identity, load_ifeval

    items = interleave(load_ifeval(split="test", data_dir=data_dir), lambda item: item.language, limit)
    return PromptSet(
        conversations=[user_turn(item.prompt) for item in items],
        ids=[item.id for item in items],
        eval_set=identity("ifeval", data_dir=data_dir),
        source="ifeval:test",
    )


def row_conversation(row: dict[str, Any]) -> Conversation | None:
    """The prompt of a dataset row as a conversation, or None when it has none.

    `prompt` text becomes one user turn, `prompt` messages are taken as they are; `messages`
    (sft) is cut after its last user turn, so the reply it holds is not part of the prompt.
    """
    value = row.get("prompt") if "prompt" in row else row.get("messages")
    if isinstance(value, str):
        return user_turn(value) if value.strip() else None
    if not isinstance(value, list):
        return None
    messages = [
        {"role": str(m["role"]), "content": str(m.get("content") or "")}
        for m in value
        if isinstance(m, dict) and m.get("role")
    ]
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        return None
    return messages[: users[-1] + 1]


def dataset_prompts(version: DatasetVersion, limit: int | None = None) -> PromptSet:
    """The first `limit` prompts of a registered dataset (rows without a prompt are skipped).

    Raises:
        EvalError: The dataset has no prompt column, or no row with a prompt.
    """
    names = version.schema.names
    column = next((c for c in PROMPT_COLUMNS if c in names), None)
    if column is None:
        raise EvalError(
            f"dataset {version.ref} (kind {version.kind}) has no prompt column: need "
            f"{' or '.join(PROMPT_COLUMNS)}; it has {', '.join(names)}"
        )
    columns = [column] + (["id"] if "id" in names else [])
    conversations, ids = [], []
    for number, row in enumerate(version.to_arrow(columns=columns).to_pylist()):
        conversation = row_conversation(row)
        if conversation is None:
            continue
        conversations.append(conversation)
        ids.append(str(row.get("id") or number))
        if limit is not None and len(conversations) == limit:
            break
    if not conversations:
        raise EvalError(f"dataset {version.ref} has no row with a prompt in its {column!r} column")
    return PromptSet(conversations, ids, eval_set=version.ref, source=version.ref)


@dataclass
class WinRateRun:
    """A finished win rate: the report, and the suite run (stored with the model, or not)."""

    report: WinRateReport
    run: SuiteRun


def suite_name(reference: str, store: ModelStore) -> str:
    """`winrate-vs-REF`: a stored reference by name, a folder or file by its last part."""
    return f"winrate-vs-{reference if store.has(reference) else Path(reference).name}"


def run_win_rate(
    model: str,
    reference: str,
    reward_model: str,
    prompts: PromptSet,
    *,
    backend: str = "hf",
    max_tokens: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    limit: int | None = None,
    store: ModelStore | None = None,
    cache_uri: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> WinRateRun:
    """Win rate of `model` over `reference` on `prompts` by `reward_model`; stored if `model` is.

    Each model generates greedily in turn and is released before the next loads; the reward
    model loads last.

    Args:
        model: The model under evaluation: a stored name, an HF folder or a .gguf file.
        reference: The model it is compared with (same forms).
        reward_model: A stored reward model or its HF folder.
        prompts: Held-out prompts (`ifeval_prompts`, `dataset_prompts`).
        backend: `hf` or `vllm`.
        max_tokens: Reply length limit of both models (default 512).
        batch_size: Conversations per engine call (default: the engine's).
        threads: Torch threads of the hf engine.
        limit: The item limit the prompts were cut to (recorded in the settings).
        store: The model store (default: the local one).
        cache_uri: The LLM-call cache (None: `assay run`'s; "": none).
        progress: Called after each batch with (model reference, done, total).

    Raises:
        EvalError: An unknown backend, or `reward_model` is not a reward model.
        ModelStoreError: A model does not resolve.
    """
    from assay.settings import model_store_dir

    if backend not in ("hf", "vllm"):
        raise EvalError(f"--backend must be hf or vllm, got {backend!r}")
    store = store or ModelStore(model_store_dir())
    model, reference = concrete_name(store, model), concrete_name(store, reference)
    rm_path = check_models(model, reference, reward_model, store)
    ours, theirs = (
        _generator(ref, backend, batch_size, threads, store, cache_uri, progress)
        for ref in (model, reference)
    )
    tokens = max_tokens or DEFAULT_MAX_TOKENS
    started = time.monotonic()
    scorer = _LazyScorer(reward_model, rm_path, tokens)
    report = reward_win_rate(
        _Releasing(ours), _Releasing(theirs), prompts.conversations, scorer, max_tokens=tokens
    )
    for item in report.items:
        item["id"] = prompts.ids[item["index"]]
    counts = {
        "wins": report.wins, "ties": report.ties, "losses": report.losses, "failed": report.failed,
        "mean_length_a": report.mean_length_a, "mean_length_b": report.mean_length_b,
        "length_unit": report.length_unit,
    }  # fmt: skip
    result_settings = sampling_settings(tokens, limit) | {
        "prompts": prompts.source,
        "reference": {"model": reference, "identity": theirs.model_identity,
                      "generation": theirs.stats.as_dict()},
        "reward_model": {"model": reward_model, "path": str(rm_path)},
        "counts": counts,
        "engine": ours.config.model_dump(mode="json", exclude={"model"}),
    }  # fmt: skip
    result = SuiteResult(
        suite=suite_name(reference, store),
        eval_set=prompts.eval_set,
        metrics=report.metrics(),
        items=report.items,
        wall_s=time.monotonic() - started,
        settings=result_settings,
    )
    run = SuiteRun(result, ours.stats.as_dict())
    if store.has(model):
        run.stored = store_result(
            store, model, result, model_identity=ours.model_identity, generation=run.generation
        )
    return WinRateRun(report, run)


def check_models(model: str, reference: str, reward_model: str, store: ModelStore) -> Path:
    """Resolve the three models without loading one; return the reward model's folder.

    Raises:
        ModelStoreError: A model does not resolve (the message names its role).
        EvalError: `reward_model`'s config does not have one output (not a reward model).
    """
    paths = {}
    for role, ref in (("MODEL", model), ("--reference", reference), ("--reward-model", reward_model)):
        try:
            paths[role] = store.resolve(ref).path
        except ModelStoreError as err:
            raise ModelStoreError(f"{role}: {err}") from err
    path = paths["--reward-model"]
    try:  # config.json, not AutoConfig: no transformers import on the way to a refusal
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EvalError(f"reward model {reward_model!r}: cannot read its config.json: {err}") from err
    # transformers' default is two labels when a config names none
    labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels", 2)
    if labels != 1:
        raise EvalError(
            f"reward model {reward_model!r} is not a reward model (a model with one output; it has {labels})"
        )
    return path


def _generator(
    ref: str,
    backend: str,
    batch_size: int | None,
    threads: int | None,
    store: ModelStore,
    cache_uri: str | None,
    progress: Callable[[str, int, int], None] | None,
) -> EngineGenerator:
    from datagen.engines.config import parse_engine_config
    from evals.generation import EngineGenerator

    raw: dict[str, Any] = {"backend": backend, "model": ref}
    if batch_size is not None:
        raw["batch_size"] = batch_size
    if threads is not None and backend == "hf":
        raw["torch_threads"] = threads
    report = None if progress is None else (lambda done, total: progress(ref, done, total))
    return EngineGenerator(parse_engine_config(raw), store=store, cache_uri=cache_uri, progress=report)


class _Releasing:
    """A generator whose engine is released after each call, so the first model's memory is given
    back before the second loads (two in-process vLLM engines would each claim a GPU share)."""

    def __init__(self, inner: EngineGenerator) -> None:
        self.inner = inner

    def complete(self, conversations: Sequence[Conversation], **sampling: Any) -> list[list[str] | Exception]:
        try:
            return self.inner.complete(conversations, **sampling)
        finally:
            self.inner.close()
            gc.collect()


class _LazyScorer:
    """`reward_model.score.RewardScorer`, loaded at the first score (after both models ran)."""

    def __init__(self, name: str, path: Path, max_tokens: int) -> None:
        self.name, self.path, self.max_tokens = name, path, max_tokens
        self.scorer: RewardScorer | None = None

    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """One reward per (prompt, completion)."""
        from reward_model.score import RewardScorer

        try:
            if self.scorer is None:
                self.scorer = RewardScorer(self.path, max_length=self._max_length())
            return self.scorer.score(prompts, completions)
        except (OSError, ValueError) as err:
            raise EvalError(f"reward model {self.name!r}: {err}") from err

    def _max_length(self) -> int:
        """The length the reward model was trained at (1024 if unknown), raised to fit a reply
        of `max_tokens` with room for the prompt: a longer reply would not score at all."""
        from reward_model.model import CONFIG_KEY

        config = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        trained = (config.get(CONFIG_KEY) or {}).get("max_length") or 1024
        return max(int(trained), self.max_tokens + 256)
