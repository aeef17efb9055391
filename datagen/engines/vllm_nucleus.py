"""Top-p for the `vllm` engine on CPU as a vLLM logits processor, found without a full sort.

vLLM's CPU sampler applies top-p by sorting every sequence's whole vocabulary at every step
(`apply_top_k_top_p_pytorch`): on the demo's settings that made generation 1.32x slower than
this processor (docs/performance.md, "Demo speed, part 3"). On CPU the engine therefore sends
vLLM top_p 1.0 and the real mass in `SamplingParams.extra_args[TOP_P_ARG]`, and this processor
masks every logit outside the nucleus with `datagen.engines.nucleus` (partial selection, exact).
vLLM runs argmax-invariant processors after dividing by the temperature and before its own
top-k/top-p, where its top-p would have run, then samples from the masked logits with the
request's seed as before: the same nucleus, the same draw. The one difference: tokens tied with
the nucleus's least likely token are all kept, where vLLM's sort keeps an arbitrary subset
(rare in float32 logits, common in bfloat16 ones). On GPUs vLLM's own kernels do top-p.

Imported only by the engine's actors (it needs vllm); vLLM's engine process loads the class by
its module path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from datagen.engines.nucleus import mask_outside_nucleus

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig

TOP_P_ARG = "assay_top_p"


def requested_top_p(params: SamplingParams) -> float | None:
    """The nucleus mass a request asks this processor for, or None."""
    value = (params.extra_args or {}).get(TOP_P_ARG)
    return None if value is None or value >= 1.0 else float(value)


class NucleusLogitsProcessor(LogitsProcessor):
    """Masks the logits outside each request's nucleus (requests with `extra_args[TOP_P_ARG]`)."""

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        self.top_p: dict[int, float] = {}  # batch index -> nucleus mass

    def is_argmax_invariant(self) -> bool:
        """The most likely token is always in the nucleus, so greedy sampling never changes."""
        return True

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Follow the requests through vLLM's persistent batch: removed, then added, then moved."""
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.top_p.pop(index, None)
        for index, params, _, _ in batch_update.added:
            top_p = requested_top_p(params)
            if top_p is None:
                self.top_p.pop(index, None)
            else:
                self.top_p[index] = top_p
        for source, target, direction in batch_update.moved:
            moved, replaced = self.top_p.pop(source, None), self.top_p.pop(target, None)
            if moved is not None:
                self.top_p[target] = moved
            if replaced is not None and direction == MoveDirectionality.SWAP:
                self.top_p[source] = replaced

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.top_p:
            return logits
        limits = torch.tensor(list(self.top_p.values()), dtype=torch.float32)
        if len(self.top_p) == logits.shape[0]:  # every row (the usual case): no copy
            order = torch.tensor(list(self.top_p), dtype=torch.long).argsort()
            return mask_outside_nucleus(logits, limits[order])
        rows = torch.tensor(list(self.top_p), dtype=torch.long)
        logits[rows] = mask_outside_nucleus(logits[rows], limits)
        return logits
