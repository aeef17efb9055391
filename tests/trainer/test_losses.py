"""Each preference loss against a hand-computed case."""

import math

import torch

from trainer import losses


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_dpo_matches_hand_computation() -> None:
    # margin = (-1 - -2) - (-3 - -2.5) = 1 - (-0.5) = 1.5; beta 0.1 -> -log sigmoid(0.15)
    loss = losses.dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.5), beta=0.1)
    assert math.isclose(loss.item(), -math.log(1 / (1 + math.exp(-0.15))), rel_tol=1e-12)
    # equal policy and reference: log 2
    assert math.isclose(losses.dpo_loss(t(-1.0), t(-2.0), t(-1.0), t(-2.0), 0.5).item(), math.log(2))


def test_ipo_matches_hand_computation() -> None:
    # margin 1.5, beta 0.25 -> (1.5 - 2)^2 = 0.25
    assert math.isclose(losses.ipo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.5), beta=0.25).item(), 0.25)


def test_slic_hinge() -> None:
    assert math.isclose(losses.slic_loss(t(-1.0), t(-1.5), delta=1.0).item(), 0.5)
    assert losses.slic_loss(t(-1.0), t(-3.0), delta=1.0).item() == 0.0


def test_copg_matches_the_formula() -> None:
    # k = 2: R = (1, 0), log-ratios (0.5, -0.5), beta 0.1 -> R_beta = (0.95, 0.05) -> 0.9^2 / 1
    policy, reference = t(-1.0, -2.5).unsqueeze(0), t(-1.5, -2.0).unsqueeze(0)
    loss = losses.copg_loss(policy, reference, t(1.0, 0.0).unsqueeze(0), beta=0.1)
    assert math.isclose(loss.item(), 0.81, rel_tol=1e-12)
    # k = 3, no log-ratio: R = (3, 1, 0) -> ((3-1)^2 + (3-0)^2 + (1-0)^2) / 2 = 7
    zeros = torch.zeros(1, 3, dtype=torch.float64)
    assert math.isclose(losses.copg_loss(zeros, zeros, t(3.0, 1.0, 0.0).unsqueeze(0), 0.1).item(), 7.0)


def test_sequence_logps_sum_mean_and_mask() -> None:
    logits = torch.zeros(1, 4, 2)  # uniform over 2 tokens: each log-prob is log 0.5
    labels = torch.tensor([[-100, -100, 1, 0]])  # two targets
    total, counts = losses.sequence_logps(logits, labels)
    assert counts.tolist() == [2] and math.isclose(total.item(), 2 * math.log(0.5), rel_tol=1e-6)
    mean, _ = losses.sequence_logps(logits, labels, length_normalize=True)
    assert math.isclose(mean.item(), math.log(0.5), rel_tol=1e-6)
