"""Evaluation of a reward model on labelled pairs: pairwise accuracy and calibration.

Accuracy counts a pair right when the reward difference points the way its label does (ties,
label 0.5, are left out). Calibration compares the predicted probability sigma(delta r) with
the labels: each pair enters in both orders ((sigma(d), p) and (sigma(-d), 1 - p)), so the
order a pair is stored in does not matter, and the expected calibration error (Naeini et al.
2015; Guo et al. 2017) is the bin-size-weighted mean |mean prediction - mean label| over
equal-width bins of the prediction.

The trust check (`trust_report`) sets the accuracy next to what reply length alone achieves on
the same pairs ("the longer reply wins", "the shorter reply wins") and a length-controlled
accuracy, and says whether the reward model beats the best of them by more than one standard
error: only then should anything select data by its rewards.
"""

from __future__ import annotations

import math
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


# --- Is the reward model worth trusting? -------------------------------------------------------


@dataclass
class Rate:
    """A proportion over `n` pairs with its standard error sqrt(p (1 - p) / (n - 1))."""

    value: float
    stderr: float
    n: int


def _rate(scores: Sequence[float]) -> Rate:
    """Mean of per-pair scores (1 right, 0 wrong, 0.5 a tie) and its standard error."""
    n = len(scores)
    if n == 0:
        return Rate(math.nan, math.nan, 0)
    mean = sum(scores) / n
    if n < 2:
        return Rate(mean, 0.0, n)
    variance = sum((s - mean) ** 2 for s in scores) / (n - 1)
    return Rate(mean, math.sqrt(variance / n), n)


@dataclass
class TrustReport:
    """The reward model's pairwise accuracy next to what reply length alone achieves.

    Attributes:
        accuracy: Pairs where the reward prefers the preferred reply (a reward tie counts as
            wrong, as in `EvalReport.accuracy`).
        longer_wins: Accuracy of "the longer reply is the better one" (equal lengths: half).
        shorter_wins: Accuracy of "the shorter reply is the better one" (1 - longer_wins).
        length_controlled: Length-balanced accuracy, the mean of the accuracies on the pairs
            whose preferred reply is the longer one and on those whose preferred reply is the
            shorter one (see `trust_report`).
        preferred_longer: Accuracy on the pairs whose preferred reply is the longer one.
        preferred_shorter: Accuracy on the pairs whose preferred reply is the shorter one.
        length_unit: What length counts ("characters" of the reply's text).
        best_baseline: "longer-wins" or "shorter-wins", whichever scored more.
        trusted: accuracy > best baseline + one standard error of the accuracy.
    """

    accuracy: Rate
    longer_wins: Rate
    shorter_wins: Rate
    length_controlled: Rate
    preferred_longer: Rate
    preferred_shorter: Rate
    length_unit: str
    best_baseline: str
    trusted: bool

    def as_dict(self) -> dict:
        """JSON-ready form; a rate that could not be measured (NaN) is None."""

        def finite(value: object) -> object:
            if isinstance(value, dict):
                return {k: finite(v) for k, v in value.items()}
            return None if isinstance(value, float) and math.isnan(value) else value

        return finite(asdict(self))  # type: ignore[return-value]

    def verdict_line(self) -> str:
        """One line: the verdict, the accuracy with its stderr, and the best baseline."""
        best = self.longer_wins if self.best_baseline == "longer-wins" else self.shorter_wins
        word = "trusted" if self.trusted else "NOT trusted"
        controlled = self.length_controlled
        lc = (
            "n/a"
            if math.isnan(controlled.value)
            else f"{100 * controlled.value:.1f} % ± {100 * controlled.stderr:.1f}"
        )
        return (
            f"reward model {word}: {100 * self.accuracy.value:.1f} % ± {100 * self.accuracy.stderr:.1f} "
            f"vs {self.best_baseline} {100 * best.value:.1f} % (n {self.accuracy.n}; length-controlled {lc})"
        )


def reply_length(messages: Sequence[dict[str, str]] | str) -> int:
    """Characters of a reply: its text, or the content of all its messages."""
    if isinstance(messages, str):
        return len(messages)
    return sum(len(message.get("content") or "") for message in messages)


def trust_report(
    chosen: Sequence[float] | torch.Tensor,
    rejected: Sequence[float] | torch.Tensor,
    labels: Sequence[float] | torch.Tensor,
    chosen_lengths: Sequence[int],
    rejected_lengths: Sequence[int],
) -> TrustReport:
    """Whether a reward model beats the trivial length baselines on the same pairs.

    The issue it guards against: a reward model that learned "longer is better" looks useful
    (above 50 %) while it adds nothing over counting characters. So next to its accuracy this
    reports, on the very same pairs:

    - **longer-wins** and **shorter-wins**: the accuracy of picking the longer (shorter) reply;
      pairs of equal length count half, so the two add up to 1.
    - **length-controlled accuracy**: the mean of the model's accuracy on the two strata "the
      preferred reply is the longer one" and "the preferred reply is the shorter one" (pairs
      of equal length are left out). Any rule that looks only at which reply is longer is right
      on all of one stratum and wrong on all of the other, so it scores exactly 50 %, whatever
      the mix of the set; so does chance. Above 50 % means the model uses something besides
      length. Its stderr is sqrt(se_1^2 + se_2^2) / 2 (independent strata).

    Length is counted in characters of the reply's text, not tokens, so the baselines do not
    depend on the reward model's tokenizer and agree across models on the same pairs.

    The verdict, `trusted`, is accuracy > best baseline + one standard error of the accuracy:
    the loop uses a reward model to select data only then.

    Args:
        chosen: Reward of each pair's `chosen` reply.
        rejected: Reward of each pair's `rejected` reply.
        labels: Probability that `chosen` is better; pairs labelled 0.5 (ties) are left out.
        chosen_lengths: Length of each `chosen` reply in characters.
        rejected_lengths: Length of each `rejected` reply in characters.
    """
    rows = zip(
        torch.as_tensor(chosen).tolist(),
        torch.as_tensor(rejected).tolist(),
        torch.as_tensor(labels, dtype=torch.float64).tolist(),
        chosen_lengths,
        rejected_lengths,
        strict=True,
    )
    right: list[float] = []
    longer: list[float] = []
    by_stratum: dict[str, list[float]] = {"longer": [], "shorter": []}
    for r_chosen, r_rejected, label, len_chosen, len_rejected in rows:
        if label == 0.5:
            continue
        # Orient each pair as (preferred, other).
        delta = r_chosen - r_rejected if label > 0.5 else r_rejected - r_chosen
        len_preferred, len_other = (len_chosen, len_rejected) if label > 0.5 else (len_rejected, len_chosen)
        correct = float(delta > 0)
        right.append(correct)
        if len_preferred == len_other:
            longer.append(0.5)
        else:
            longer.append(float(len_preferred > len_other))
            by_stratum["longer" if len_preferred > len_other else "shorter"].append(correct)
    accuracy, longer_wins = _rate(right), _rate(longer)
    shorter_wins = Rate(1.0 - longer_wins.value, longer_wins.stderr, longer_wins.n)
    preferred_longer, preferred_shorter = _rate(by_stratum["longer"]), _rate(by_stratum["shorter"])
    strata = [s for s in (preferred_longer, preferred_shorter) if s.n]
    if len(strata) == 2:
        controlled = Rate(
            (preferred_longer.value + preferred_shorter.value) / 2,
            math.sqrt(preferred_longer.stderr**2 + preferred_shorter.stderr**2) / 2,
            preferred_longer.n + preferred_shorter.n,
        )
    else:  # every pair falls on one side: length cannot be told apart from quality here
        controlled = Rate(math.nan, math.nan, sum(s.n for s in strata))
    best_name, best = ("longer-wins", longer_wins)
    if shorter_wins.value > longer_wins.value:
        best_name, best = ("shorter-wins", shorter_wins)
    trusted = bool(accuracy.n) and accuracy.value > best.value + accuracy.stderr
    return TrustReport(
        accuracy=accuracy,
        longer_wins=longer_wins,
        shorter_wins=shorter_wins,
        length_controlled=controlled,
        preferred_longer=preferred_longer,
        preferred_shorter=preferred_shorter,
        length_unit="characters",
        best_baseline=best_name,
        trusted=trusted,
    )


def format_trust(report: TrustReport) -> str:
    """The trust check in plain text: the baselines, the strata, then the one-line verdict."""

    def pct(rate: Rate) -> str:
        if math.isnan(rate.value):
            return f"  n/a          (n {rate.n})"
        return f"{100 * rate.value:5.1f} % ± {100 * rate.stderr:4.1f} (n {rate.n})"

    return "\n".join(
        [
            f"accuracy            {pct(report.accuracy)}",
            f"longer-wins         {pct(report.longer_wins)}   (length in {report.length_unit})",
            f"shorter-wins        {pct(report.shorter_wins)}",
            f"length-controlled   {pct(report.length_controlled)}   (50 % = length alone or chance)",
            f"  preferred longer  {pct(report.preferred_longer)}",
            f"  preferred shorter {pct(report.preferred_shorter)}",
            report.verdict_line(),
        ]
    )
