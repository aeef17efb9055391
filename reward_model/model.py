"""A reward model: any HF backbone with a scalar head, saved as an HF sequence-classification
folder (`AutoModelForSequenceClassification`, one label), so other tools can load it too.

Decoders read the reward at each sample's last token and take packed rows (see packing.py);
encoders use their own classification pooling over right-padded batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from reward_model.packing import PackedBatch

Pooling = Literal["last", "cls"]
CONFIG_KEY = "assay_reward_model"  # our fields inside the HF config.json


def _default_pooling(config: Any) -> Pooling:
    """Encoders (model types with a masked-LM head, e.g. BERT) pool; everything else is a decoder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "cls" if getattr(config, "model_type", "") in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "last"


class RewardModel(nn.Module):
    """A scalar reward per sequence from an HF sequence-classification model with one label."""

    def __init__(self, hf_model: Any, pooling: Pooling) -> None:
        super().__init__()
        self.hf = hf_model
        self.pooling: Pooling = pooling
        if pooling == "last":
            self.head = getattr(hf_model, "score", None)
            if self.head is None:
                raise ValueError(f"{type(hf_model).__name__} has no `score` head to read a last token with")

    @classmethod
    def from_backbone(
        cls,
        path: Path | str,
        *,
        pooling: str = "auto",
        seed: int = 0,
        load_kwargs: dict[str, Any] | None = None,
    ) -> RewardModel:
        """A fresh reward model on a pretrained backbone (a causal LM or encoder folder); the head
        is initialised from `seed`."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        load_kwargs = load_kwargs or {}
        config = AutoConfig.from_pretrained(path, num_labels=1, **load_kwargs)
        resolved: Pooling = _default_pooling(config) if pooling == "auto" else pooling  # type: ignore[assignment]
        if config.pad_token_id is None:
            config.pad_token_id = config.eos_token_id if isinstance(config.eos_token_id, int) else 0
        torch.manual_seed(seed)
        hf = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, dtype=torch.float32, **load_kwargs
        )
        hf.hf_quantizer = None  # GGUF weights are dequantized on load
        return cls(hf, resolved)

    @classmethod
    def load(cls, path: Path | str) -> RewardModel:
        """Load a reward model saved by `save` (or any one-label sequence-classification folder)."""
        from transformers import AutoModelForSequenceClassification

        hf = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
        if hf.config.num_labels != 1:
            raise ValueError(f"{path} is a classifier with {hf.config.num_labels} labels, not a reward model")
        saved = getattr(hf.config, CONFIG_KEY, None) or {}
        return cls(hf, saved.get("pooling") or _default_pooling(hf.config))

    def save(self, folder: Path, tokenizer: Any, extra: dict[str, Any] | None = None) -> None:
        """Save as an HF folder (safetensors, config with our fields, tokenizer)."""
        setattr(self.hf.config, CONFIG_KEY, {"pooling": self.pooling, **(extra or {})})
        self.hf.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        """Rewards of a packed batch, shape [tracks, segments] (track 0: chosen, 1: rejected)."""
        if self.pooling != "last":
            return self._pooled(batch)
        device = self.head.weight.device
        # No attention mask: the restarting position ids make transformers build the
        # block-diagonal causal mask, so packed samples and padding never see each other.
        hidden = self.hf.base_model(
            input_ids=batch.input_ids.to(device), position_ids=batch.position_ids.to(device), use_cache=False
        ).last_hidden_state
        rows = batch.input_ids.shape[0] // batch.tracks
        per_track = []
        for t in range(batch.tracks):
            picked = hidden[t * rows + batch.end_rows.to(device), batch.end_cols.to(device)]
            per_track.append(self.head(picked).squeeze(-1))
        return torch.stack(per_track)

    def _pooled(self, batch: PackedBatch) -> torch.Tensor:
        """Encoders: one sample per row, moved to the left (right padding) and pooled by the model."""
        if len(set(batch.end_rows.tolist())) != len(batch.end_rows):
            raise ValueError("encoder reward models do not take packed rows; set packing: false")
        rows = batch.input_ids.shape[0] // batch.tracks
        ids = torch.zeros_like(batch.input_ids)
        mask = torch.zeros_like(batch.input_ids)
        for t in range(batch.tracks):
            for r, end in zip(batch.end_rows.tolist(), batch.end_cols.tolist(), strict=True):
                row = t * rows + r
                length = int(batch.position_ids[row, end]) + 1  # positions restart at the sample
                ids[row, :length] = batch.input_ids[row, end - length + 1 : end + 1]
                mask[row, :length] = 1
        device = self.hf.device
        logits = self.hf(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.squeeze(-1)
        return logits.view(batch.tracks, rows)[:, batch.end_rows.to(device)]
