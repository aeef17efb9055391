"""The training loop runs from a `LoopConfig` alone: a linear model and a squared-error objective,
no tokenizer, no dataset, no `TrainConfig`. Steps, schedule and seed do what the config says."""

from collections.abc import Sequence

import pytest
import torch

from trainer.config import LoopConfig, TrainConfig
from trainer.loop import train

Item = tuple[torch.Tensor, torch.Tensor]


class SquaredError:
    """Sum of squared errors of a model on (x, y) items; each item is one unit."""

    def units(self, items: Sequence[Item]) -> int:
        return len(items)

    def loss_sum(self, model: torch.nn.Module, items: Sequence[Item]) -> torch.Tensor:
        x = torch.stack([x for x, _ in items])
        y = torch.stack([y for _, y in items])
        return ((model(x) - y) ** 2).sum()


def regression_items(n: int = 32) -> list[Item]:
    """Points of y = x·w + 0.3 with a fixed w: a linear model can fit them exactly."""
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    return list(zip(x, y, strict=True))


def linear() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1)


def test_the_loop_trains_a_model_from_a_loop_config_alone() -> None:
    model = linear()
    before = [p.detach().clone() for p in model.parameters()]
    config = LoopConfig(
        epochs=10, micro_batch_size=4, gradient_accumulation=2, learning_rate=0.1, warmup_ratio=0.1
    )
    metrics = train(model, regression_items(), SquaredError(), config, log=lambda _: None)
    assert metrics.steps == 40 and metrics.units == 320
    assert metrics.losses[-1] < 0.1 * metrics.losses[0]
    assert all(not torch.equal(p, p0) for p, p0 in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize(
    ("epochs", "accumulation", "max_steps", "steps", "units"),
    [
        (1, 1, None, 8, 32),  # 32 items, 4 per step
        (2, 2, None, 8, 64),  # 8 per step: 4 steps an epoch
        (3, 3, None, 9, 96),  # 12 per step: the last step of each epoch holds the 8 left over
        (3, 1, 5, 5, 20),  # max_steps cuts the run short
    ],
)
def test_steps_follow_epochs_accumulation_and_max_steps(
    epochs: int, accumulation: int, max_steps: int | None, steps: int, units: int
) -> None:
    config = LoopConfig(
        epochs=epochs, micro_batch_size=4, gradient_accumulation=accumulation, max_steps=max_steps
    )
    metrics = train(linear(), regression_items(), SquaredError(), config, log=lambda _: None)
    assert (metrics.steps, metrics.units) == (steps, units)


def test_the_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    lines: list[str] = []
    config = LoopConfig(
        micro_batch_size=4, learning_rate=0.1, warmup_ratio=0.5, min_lr_ratio=0.1, log_every=1
    )
    train(linear(), regression_items(), SquaredError(), config, log=lines.append)
    # Each line gives the learning rate of the next step: 8 steps, 4 of them warming up.
    rates = [float(line.rsplit("lr ", 1)[1]) for line in lines]
    assert rates[:3] == pytest.approx([0.05, 0.075, 0.1])
    assert all(a >= b for a, b in zip(rates[2:], rates[3:], strict=False))
    assert rates[-1] == pytest.approx(0.01)


def test_the_seed_fixes_the_data_order() -> None:
    def losses(seed: int) -> list[float]:
        config = LoopConfig(epochs=2, micro_batch_size=4, learning_rate=0.05, seed=seed)
        return train(linear(), regression_items(), SquaredError(), config, log=lambda _: None).losses

    assert losses(1) == losses(1)
    assert losses(1) != losses(2)


def test_a_train_config_hands_the_loop_exactly_its_loop_fields() -> None:
    config = TrainConfig(
        dataset="x@1", method="dpo", epochs=3, l2_to_init=0.5, seed=7, beta=0.3, max_grad_norm=None
    )
    loop = config.loop
    assert type(loop) is LoopConfig  # no model, dataset or method travels with it
    assert loop.model_dump() == {name: getattr(config, name) for name in LoopConfig.model_fields}
    assert (loop.epochs, loop.l2_to_init, loop.seed, loop.max_grad_norm) == (3, 0.5, 7, None)


def test_every_step_is_reported_for_progress_displays() -> None:
    reports = []
    config = LoopConfig(epochs=2, micro_batch_size=8, learning_rate=0.05)
    metrics = train(
        linear(), regression_items(), SquaredError(), config, log=lambda _: None, on_step=reports.append
    )
    assert [r.step for r in reports] == list(range(1, 9)) and {r.total for r in reports} == {8}
    assert [r.loss for r in reports] == metrics.losses
    assert [r.units for r in reports] == [8 * k for k in range(1, 9)]
    assert all(later.seconds >= earlier.seconds for earlier, later in zip(reports, reports[1:], strict=False))
    assert reports[-1].eta_s == 0 and reports[0].eta_s > 0 and reports[-1].units_per_s > 0
