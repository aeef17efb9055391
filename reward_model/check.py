"""Evaluate a stored reward model on labelled pairs: accuracy, calibration and the trust check.

One function for `assay eval rm` and the loop, which checks an arbiter before it lets it select
data (evals trust: `reward_model.eval.trust_report`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reward_model.config import RMConfig, RMConfigError
from reward_model.eval import EvalReport, TrustReport, evaluate_rewards, reply_length, trust_report

if TYPE_CHECKING:
    from datasets_registry import DatasetVersion


@dataclass
class PairEvaluation:
    """A reward model's report on a pair dataset, with what was truncated or dropped."""

    report: EvalReport
    trust: TrustReport
    counts: dict[str, Any] = field(default_factory=dict)
    invalid_dropped: dict[str, int] = field(default_factory=dict)


def evaluate_on_pairs(
    model_path: Path,
    version: DatasetVersion,
    *,
    limit: int | None = None,
    max_length: int | None = None,
    batch_pairs: int = 16,
    bins: int = 10,
    on_pairs: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PairEvaluation:
    """Score every pair of `version` (kind rm_pairs or preference) with the reward model.

    Args:
        model_path: The reward model's folder.
        version: Labelled pairs the model was not trained on.
        limit: Only the first N pairs.
        max_length: Tokens per sample, prompts cut from the left; default the model's own.
        batch_pairs: Pairs per forward pass.
        bins: Reliability bins.
        on_pairs: Called with the number of valid pairs, before scoring starts.
        on_batch: Called with the number of pairs scored after each batch.

    Raises:
        RMConfigError: a dataset of another kind, no valid pair, or not a reward model folder.
    """
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel
    from reward_model.train import PAIR_KINDS, pair_rewards, read_pairs

    if version.kind not in PAIR_KINDS:
        raise RMConfigError(f"{version.ref} is of kind {version.kind!r}; need rm_pairs or preference")
    try:
        reward_model = RewardModel.load(model_path)
    except (OSError, ValueError) as err:
        raise RMConfigError(f"{model_path}: not a reward model folder: {err}") from err
    saved = getattr(reward_model.hf.config, "assay_reward_model", None) or {}
    length = max_length or saved.get("max_length") or 512
    config = RMConfig(datasets=[version.ref], max_length=length, score_batch_pairs=batch_pairs)
    pairs, dropped = read_pairs([version], config, limit)
    if not pairs:
        raise RMConfigError(f"{version.ref} has no valid pairs")
    if on_pairs is not None:
        on_pairs(len(pairs))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    rewards, tokenized, counts = pair_rewards(reward_model, tokenizer, pairs, config, on_batch=on_batch)
    labels = [p.label for p in tokenized]
    trust = trust_report(
        rewards[0], rewards[1], labels,
        [reply_length(pairs[p.index].chosen) for p in tokenized],
        [reply_length(pairs[p.index].rejected) for p in tokenized],
    )  # fmt: skip
    report = evaluate_rewards(rewards[0], rewards[1], labels, n_bins=bins)
    return PairEvaluation(report, trust, counts, dict(dropped))
