"""The training loop shared by SFT, preference and reward-model training, single-process or
under Ray Train (DDP).

AdamW with linear warmup and cosine decay, gradient accumulation normalised over the whole
optimizer step, gradient clipping, and an optional L2 pull towards the initial weights. It reads
only a `LoopConfig`; what the items are and how their loss is computed is the objective's job.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist

from trainer.config import LoopConfig


class Objective(Protocol):
    def units(self, items: Sequence[Any]) -> int: ...

    def loss_sum(self, model: torch.nn.Module, items: Sequence[Any]) -> torch.Tensor: ...


class NaNLossError(RuntimeError):
    """The loss became NaN or infinite: training stops rather than writing a broken model."""


@dataclass
class TrainMetrics:
    """What a run measured."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    units: int = 0  # target tokens (SFT) or pairs (preference) trained on
    seconds: float = 0.0

    def summary(self) -> dict[str, float | int]:
        return {
            "steps": self.steps,
            "first_loss": self.losses[0] if self.losses else float("nan"),
            "last_loss": self.losses[-1] if self.losses else float("nan"),
            "units": self.units,
            "seconds": round(self.seconds, 2),
            "units_per_s": round(self.units / self.seconds, 2) if self.seconds else 0.0,
        }


@dataclass(frozen=True)
class StepReport:
    """One finished optimizer step, for progress displays."""

    step: int
    total: int
    loss: float
    learning_rate: float
    units: int  # target tokens (SFT) or pairs (preference, reward model) so far
    seconds: float  # since training started

    @property
    def units_per_s(self) -> float:
        return self.units / self.seconds if self.seconds else 0.0

    @property
    def eta_s(self) -> float:
        """Seconds left at the mean pace so far."""
        return self.seconds / self.step * (self.total - self.step) if self.step else 0.0


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def total_steps(num_items: int, config: LoopConfig) -> int:
    """Optimizer steps over `num_items` items: whole epochs, capped by `max_steps`."""
    per_step = config.micro_batch_size * config.gradient_accumulation
    steps = math.ceil(num_items / per_step) * config.epochs
    return min(steps, config.max_steps) if config.max_steps else steps


def _all_reduce_sum(value: float, distributed: bool) -> float:
    if not distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item())


def accumulate_gradients(
    model: torch.nn.Module,
    micro_batches: Sequence[Sequence[Any]],
    objective: Objective,
    regulariser: Callable[[], torch.Tensor | None] = lambda: None,
    distributed: bool = False,
) -> float:
    """Backpropagate one optimizer step's micro batches; return the step's mean loss.

    Each micro batch's loss sum is divided by the units of the whole step (all micro batches,
    all workers), so the accumulated gradient is the same however the step is split. Under DDP
    the loss is also scaled by the world size, because DDP averages gradients across workers.
    """
    world = dist.get_world_size() if distributed else 1
    units = _all_reduce_sum(sum(objective.units(m) for m in micro_batches), distributed)
    step_loss = 0.0
    for index, micro in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last or not distributed else model.no_sync()  # type: ignore[operator]
        with sync:
            loss = objective.loss_sum(model, micro) * world / max(units, 1)
            extra = regulariser() if last else None
            if extra is not None:
                loss = loss + extra
            loss.backward()
        step_loss += loss.item() / world
    return _all_reduce_sum(step_loss, distributed)


def train(
    model: torch.nn.Module,
    items: Sequence[Any],
    objective: Objective,
    config: LoopConfig,
    *,
    log: Callable[[str], None] = print,
    on_step: Callable[[StepReport], None] | None = None,
) -> TrainMetrics:
    """Train `model` in place on `items` (this worker's shard when distributed).

    Args:
        model: the module to train; its parameters with `requires_grad` are optimised.
        items: what the objective takes; `config.micro_batch_size` of them make a micro batch.
        objective: counts each micro batch's units and returns the sum of its losses.
        config: steps, batching, schedule, clipping, L2 to init and seed.
        log: receives a progress line every `config.log_every` steps and at the last.
        on_step: receives every step's report (a progress bar's feed).

    Returns:
        The per-step losses, steps, units and seconds.

    Raises:
        NaNLossError: when a step's loss is not finite.
    """
    distributed = dist.is_available() and dist.is_initialized()
    params = [p for p in model.parameters() if p.requires_grad]
    initial = [p.detach().clone() for p in params] if config.l2_to_init > 0 else []
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = total_steps(len(items), config)
    warmup = math.ceil(config.warmup_ratio * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps, warmup, config.min_lr_ratio)
    )
    per_step, size = config.micro_batch_size * config.gradient_accumulation, config.micro_batch_size

    def l2_term() -> torch.Tensor | None:
        if not initial:
            return None
        drift = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, initial, strict=True))
        return 0.5 * config.l2_to_init * drift

    metrics = TrainMetrics()
    started = time.monotonic()
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(config.seed + epoch))
        for start in range(0, len(items), per_step):
            if metrics.steps >= steps:
                break
            chunk = [items[i] for i in order[start : start + per_step].tolist()]
            micro_batches = [chunk[i : i + size] for i in range(0, len(chunk), size)]
            step_loss = accumulate_gradients(model, micro_batches, objective, l2_term, distributed)
            if not math.isfinite(step_loss):
                raise NaNLossError(f"loss is {step_loss} at step {metrics.steps}; stopping")
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            metrics.losses.append(step_loss)
            metrics.units += sum(objective.units(m) for m in micro_batches)
            metrics.steps += 1
            if on_step is not None:
                learning_rate = scheduler.get_last_lr()[0]
                elapsed = time.monotonic() - started
                on_step(StepReport(metrics.steps, steps, step_loss, learning_rate, metrics.units, elapsed))
            if metrics.steps % config.log_every == 0 or metrics.steps == steps:
                log(
                    f"step {metrics.steps}/{steps}  loss {step_loss:.4f}  lr {scheduler.get_last_lr()[0]:.2e}"
                )
    metrics.seconds = time.monotonic() - started
    return metrics
