"""Soft-label Bradley–Terry loss (Command A report 3.2.3; Bradley & Terry 1952).

With delta = r_chosen - r_rejected and p the probability that chosen is better:

    loss = -[p * log sigma(delta - m) + (1 - p) * log sigma(-delta - m)]

The margin m >= 0 (Llama 2, Touvron et al. 2023, eq. 2) asks for a gap of at least m in the
labelled direction; it applies to both terms, so a tie (p = 0.5) is still best at delta = 0.
With m = 0 and p = 1 this is the usual -log sigma(delta).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, labels: torch.Tensor, margins: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pair soft-label Bradley–Terry cross-entropy (not reduced).

    Args:
        chosen: rewards of the chosen samples, shape [pairs].
        rejected: rewards of the rejected samples, shape [pairs].
        labels: p in [0, 1], the probability that chosen is better.
        margins: optional m >= 0 per pair.
    """
    delta = chosen - rejected
    m = torch.zeros_like(delta) if margins is None else margins.to(delta)
    p = labels.to(delta)
    return -(p * F.logsigmoid(delta - m) + (1 - p) * F.logsigmoid(-delta - m))
