"""What a training step minimises: token cross-entropy (SFT) or a preference loss over pairs.

Each objective returns the *sum* of its per-unit losses for a micro batch, and counts its units
(target tokens for SFT, pairs for preference), so the loop can normalise by the units of the
whole optimizer step: then 4 micro batches of 1 give the same update as 1 micro batch of 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer import losses
from trainer.config import TrainConfig
from trainer.data import PackedRow, Sample, as_row, collate


def forward_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits for a collated batch. No attention mask: transformers derives a block-diagonal
    causal mask from the restarting position ids, so packed samples cannot see each other."""
    device = next(model.parameters()).device
    return model(
        input_ids=batch["input_ids"].to(device),
        position_ids=batch["position_ids"].to(device),
        attention_mask=None,
        use_cache=False,
    ).logits


@dataclass
class PreferenceItem:
    """A prompt's chosen and rejected completions, their rewards and reference log-probs."""

    chosen: Sample
    rejected: Sample
    reward_chosen: float = 1.0
    reward_rejected: float = 0.0
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0


class SFTObjective:
    """Cross-entropy on assistant tokens only."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def units(self, rows: Sequence[PackedRow]) -> int:
        return sum(sum(label != -100 for label in row.labels) for row in rows)

    def loss_sum(self, model: torch.nn.Module, rows: Sequence[PackedRow]) -> torch.Tensor:
        batch = collate(rows, self.pad_id)
        logits = forward_logits(model, batch)
        logps, _ = losses.token_logps(logits, batch["labels"].to(logits.device))
        return -logps.sum()


class PreferenceObjective:
    """DPO, IPO, SLiC or CoPG over pairs, plus an optional SFT loss on the chosen completion."""

    def __init__(self, config: TrainConfig, pad_id: int) -> None:
        self.config = config
        self.pad_id = pad_id

    def units(self, items: Sequence[PreferenceItem]) -> int:
        return len(items)

    def policy_logps(
        self, model: torch.nn.Module, items: Sequence[PreferenceItem]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chosen and rejected sequence log-probs (one forward pass), and chosen token NLL means."""
        rows = [as_row(item.chosen) for item in items] + [as_row(item.rejected) for item in items]
        batch = collate(rows, self.pad_id)
        logits = forward_logits(model, batch)
        labels = batch["labels"].to(logits.device)
        logps, counts = losses.sequence_logps(logits, labels, self.config.length_normalize)
        n = len(items)
        sums, _ = losses.sequence_logps(logits[:n], labels[:n])
        chosen_nll = -sums / counts[:n].clamp(min=1)
        return logps[:n], logps[n:], chosen_nll

    def loss_sum(self, model: torch.nn.Module, items: Sequence[PreferenceItem]) -> torch.Tensor:
        config = self.config
        chosen, rejected, chosen_nll = self.policy_logps(model, items)
        device = chosen.device

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=chosen.dtype, device=device)

        ref_c = column([i.ref_chosen for i in items])
        ref_r = column([i.ref_rejected for i in items])
        if config.method == "dpo":
            per_pair = losses.dpo_loss(chosen, rejected, ref_c, ref_r, config.beta)
        elif config.method == "ipo":
            per_pair = losses.ipo_loss(chosen, rejected, ref_c, ref_r, config.beta)
        elif config.method == "slic":
            per_pair = losses.slic_loss(chosen, rejected, config.slic_delta)
        else:
            rewards = torch.stack(
                [column([i.reward_chosen for i in items]), column([i.reward_rejected for i in items])], dim=-1
            )
            policy = torch.stack([chosen, rejected], dim=-1)
            per_pair = losses.copg_loss(policy, torch.stack([ref_c, ref_r], dim=-1), rewards, config.beta)
        return (per_pair + config.sft_weight * chosen_nll).sum()

    @torch.no_grad()
    def fill_reference(self, model: torch.nn.Module, items: Sequence[PreferenceItem]) -> None:
        """Compute reference log-probs once, with the model before training, and cache them."""
        was_training = model.training
        model.eval()
        size = self.config.micro_batch_size
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            chosen, rejected, _ = self.policy_logps(model, chunk)
            for item, c, r in zip(chunk, chosen.tolist(), rejected.tolist(), strict=True):
                item.ref_chosen, item.ref_rejected = c, r
        model.train(was_training)
