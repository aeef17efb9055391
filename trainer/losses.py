"""Training losses. Each returns per-example losses; the loop sums and normalises them.

Notation: for a prompt x and completion y, log-ratio(y) = log pi(y|x) - log pi_ref(y|x), summed
over completion tokens, or averaged with length normalisation.
"""

import torch
import torch.nn.functional as F

from trainer.data import IGNORE


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each next-token label, and the mask of positions that have one.

    Only target positions go through the (vocabulary-wide) softmax, which keeps memory down
    when most of a row is prompt or padding.

    Returns:
        (logps, mask), both of shape (batch, length - 1); logps is 0 where mask is False.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE
    picked = -F.cross_entropy(logits[:, :-1][mask].float(), targets[mask], reduction="none")
    logps = torch.zeros(targets.shape, dtype=picked.dtype, device=picked.device)
    return logps.masked_scatter(mask, picked), mask


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, length_normalize: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum (or mean) of completion-token log-probs per sequence, and the token counts."""
    logps, mask = token_logps(logits, labels)
    counts = mask.sum(-1)
    total = logps.sum(-1)
    return (total / counts.clamp(min=1) if length_normalize else total), counts


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:  # fmt: skip
    """DPO (Rafailov et al. 2023): -log sigma(beta * (log-ratio(y_c) - log-ratio(y_r)))."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def ipo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:  # fmt: skip
    """IPO (Azar et al. 2023): (log-ratio(y_c) - log-ratio(y_r) - 1 / (2 beta))^2."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return (margin - 1.0 / (2.0 * beta)) ** 2


def slic_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, delta: float) -> torch.Tensor:
    """SLiC-HF calibration hinge (Zhao et al. 2023): max(0, delta - log pi(y_c|x) + log pi(y_r|x))."""
    return torch.clamp(delta - policy_chosen + policy_rejected, min=0.0)


def copg_loss(
    policy: torch.Tensor, reference: torch.Tensor, rewards: torch.Tensor, beta: float
) -> torch.Tensor:
    """Offline CoPG (Flet-Berliac et al. 2024; Command A report 3.2.2) for k completions of a prompt.

    loss = 1/(k-1) * sum_{i>j} (R_beta(x, y_i) - R_beta(x, y_j))^2,
    R_beta(x, y) = R(x, y) - beta * ln(pi(y|x) / pi_ref(y|x)).

    Args:
        policy, reference: log pi and log pi_ref, shape (prompts, k).
        rewards: R, shape (prompts, k).

    Returns:
        One loss per prompt.
    """
    regularised = rewards - beta * (policy - reference)
    k = regularised.shape[-1]
    differences = regularised.unsqueeze(-1) - regularised.unsqueeze(-2)  # [i, j] = R_i - R_j
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=regularised.device), diagonal=1)
    return (differences[..., upper] ** 2).sum(-1) / (k - 1)
