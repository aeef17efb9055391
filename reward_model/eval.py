"""Evaluation of a reward model on labelled pairs: pairwise accuracy and calibration.

Accuracy counts a pair right when the reward difference points the way its label does (ties,
label 0.5, are left out). Calibration compares the predicted probability sigma(delta r) with
the labels: each pair enters in both orders ((sigma(d), p) and (sigma(-d), 1 - p)), so the
order a pair is stored in does not matter, and the expected calibration error (Naeini et al.
2015; Guo et al. 2017) is the bin-size-weighted mean |mean prediction - mean label| over
equal-width bins of the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from reward_model.loss import bradley_terry_loss


@dataclass
class ReliabilityBin:
    """One bin of the reliability diagram."""

    low: float
    high: float
    count: int
    mean_prediction: float
    mean_label: float


@dataclass
class EvalReport:
    """What an evaluation measured."""

    pairs: int
    accuracy: float
    loss: float
    ece: float
    mean_margin: float
    bins: list[ReliabilityBin]

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict[str, float | int]:
        return {
            "pairs": self.pairs,
            "accuracy": round(self.accuracy, 4),
            "loss": round(self.loss, 4),
            "ece": round(self.ece, 4),
            "mean_margin": round(self.mean_margin, 4),
        }


def evaluate_rewards(
    chosen: torch.Tensor, rejected: torch.Tensor, labels: Sequence[float] | torch.Tensor, n_bins: int = 10
) -> EvalReport:
    """Accuracy, soft-label loss and calibration from rewards already computed."""
    labels = torch.as_tensor(labels, dtype=torch.float32)
    delta = (chosen - rejected).float()
    decided = labels != 0.5
    right = ((delta > 0) & (labels > 0.5)) | ((delta < 0) & (labels < 0.5))
    accuracy = float(right[decided].float().mean()) if decided.any() else float("nan")
    loss = float(bradley_terry_loss(chosen.float(), rejected.float(), labels).mean()) if len(labels) else 0.0
    predictions = torch.cat([torch.sigmoid(delta), torch.sigmoid(-delta)])
    targets = torch.cat([labels, 1 - labels])
    bins, ece = [], 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        inside = (predictions >= low) & ((predictions < high) if b < n_bins - 1 else (predictions <= high))
        count = int(inside.sum())
        if count == 0:
            continue
        mean_prediction, mean_label = float(predictions[inside].mean()), float(targets[inside].mean())
        ece += count / len(predictions) * abs(mean_prediction - mean_label)
        bins.append(ReliabilityBin(low, high, count, mean_prediction, mean_label))
    signed = torch.where(labels >= 0.5, delta, -delta)
    return EvalReport(
        pairs=len(labels),
        accuracy=accuracy,
        loss=loss,
        ece=ece,
        mean_margin=float(signed.mean()) if len(labels) else 0.0,
        bins=bins,
    )


def format_report(report: EvalReport) -> str:
    """A plain-text report: headline figures and the reliability bins."""
    lines = [
        f"pairs {report.pairs}  accuracy {report.accuracy:.1%}  loss {report.loss:.4f}  "
        f"ECE {report.ece:.4f}  mean margin {report.mean_margin:+.4f}",
        "sigma(delta r) bin   count  mean prediction  mean label",
    ]
    for b in report.bins:
        lines.append(
            f"[{b.low:.1f}, {b.high:.1f}]       {b.count:6d}  {b.mean_prediction:15.3f}  {b.mean_label:10.3f}"
        )
    return "\n".join(lines)
