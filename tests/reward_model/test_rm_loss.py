"""The soft-label Bradley–Terry loss against hand-computed values."""

import math

import pytest
import torch

from reward_model.loss import bradley_terry_loss


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


@pytest.mark.parametrize(
    ("chosen", "rejected", "label", "margin"),
    [
        (1.0, 0.0, 1.0, 0.0),
        (1.0, 0.0, 0.999, 0.0),
        (1.0, 0.0, 0.5, 0.0),
        (0.3, 1.1, 0.999, 0.5),
        (2.0, -1.0, 0.2, 1.0),
    ],
)
def test_loss_matches_hand_computation(chosen: float, rejected: float, label: float, margin: float) -> None:
    delta = chosen - rejected
    expected = -(label * log_sigmoid(delta - margin) + (1 - label) * log_sigmoid(-delta - margin))
    got = bradley_terry_loss(
        torch.tensor([chosen]), torch.tensor([rejected]), torch.tensor([label]), torch.tensor([margin])
    )
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_known_values() -> None:
    # p = 1, delta = 1: -log sigma(1) = log(1 + e^-1)
    one = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    assert one.item() == pytest.approx(0.313262, abs=1e-6)
    # p = 0.5, delta = 1: the mean of log(1 + e^-1) and log(1 + e)
    tie = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.5]))
    assert tie.item() == pytest.approx(0.5 * (0.313262 + 1.313262), abs=1e-6)
    # margin 1 at delta 1 with p = 1: log 2
    margin = bradley_terry_loss(
        torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([1.0])
    )
    assert margin.item() == pytest.approx(math.log(2), abs=1e-6)


def test_tie_is_best_at_equal_rewards_even_with_margin() -> None:
    delta = torch.zeros(1, requires_grad=True)
    loss = bradley_terry_loss(delta, torch.zeros(1), torch.tensor([0.5]), torch.tensor([0.7]))
    loss.backward()
    assert delta.grad.abs().item() < 1e-7  # a tie pulls towards delta = 0 from both sides


def test_gold_label_pushes_chosen_up_and_soft_label_stops_short() -> None:
    delta = torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(delta, torch.zeros(1), torch.tensor([0.999])).backward()
    assert delta.grad.item() < 0  # gradient descent raises the chosen reward
    # the minimum of a soft label p is at sigma(delta) = p: finite, unlike p = 1
    best = math.log(0.999 / 0.001)
    d = torch.tensor([best], requires_grad=True)
    bradley_terry_loss(d, torch.zeros(1), torch.tensor([0.999])).backward()
    assert abs(d.grad.item()) < 1e-6
