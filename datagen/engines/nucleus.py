"""Exact nucleus (top-p) filtering without sorting the whole vocabulary.

Nucleus sampling (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration", section
3.1) samples from the smallest set of most likely tokens whose mass reaches p: with a row's
probabilities in descending order p_(1) >= p_(2) >= ..., token (j) is kept iff
sum_{i<j} p_(i) < p (so the most likely token always is).

vLLM's CPU sampler and the `hf` engine used to find it by sorting all 49,152 probabilities of
every sequence at every step, which on this project's 2-core machines took longer than the
135M model's forward pass (docs/performance.md, "Demo speed, part 3"). The nucleus almost always
holds far fewer tokens than the vocabulary, so each row first takes only its k most likely tokens
(a partial selection): if their mass reaches p, the first token left out is not in the nucleus
and neither is any after it, so the nucleus found among the k is exactly the one a full sort
gives. Rows whose k tokens fall short try a larger k; the last try sorts the whole row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Partial selections tried before a full sort: 64 holds the nucleus of almost every step of a
# chat model at temperatures up to about 1; 1,024 catches most of the rest.
NUCLEUS_SIZES = (64, 1024)


@dataclass(frozen=True)
class Nucleus:
    """The nuclei of some rows of a batch, in descending probability.

    Attributes:
        rows: Which rows of the batch these are (int64, shape (r,)).
        probs: Each row's k most likely probabilities, descending, zero outside its nucleus
            (shape (r, k)).
        ids: The token ids of those probabilities (shape (r, k)).
    """

    rows: Any
    probs: Any
    ids: Any


def nuclei(probs: Any, top_p: Any) -> list[Nucleus]:
    """The nucleus of every row, grouped by how many top tokens it took to find it.

    Args:
        probs: (B, V) float tensor of probabilities, each row summing to 1.
        top_p: (B,) float tensor, each row's nucleus mass p in (0, 1].

    Returns:
        Groups covering every row exactly once.
    """
    import torch

    vocab = probs.shape[-1]
    remaining = torch.arange(probs.shape[0])
    groups: list[Nucleus] = []
    rows_probs, limit = probs, top_p
    for size in (*NUCLEUS_SIZES, vocab):
        if size < vocab:
            values, ids = rows_probs.topk(size, dim=-1)  # sorted, descending
        else:
            values, ids = rows_probs.sort(dim=-1, descending=True)
        cumulative = values.cumsum(dim=-1)
        before = cumulative - values  # mass of the more likely tokens
        # The first token left out is dropped exactly when the mass of the kept ones reaches p.
        found = cumulative[:, -1] >= limit if size < vocab else torch.ones_like(limit, dtype=torch.bool)
        if bool(found.any()):
            kept = values[found].masked_fill(before[found] >= limit[found, None], 0.0)
            groups.append(Nucleus(rows=remaining[found], probs=kept, ids=ids[found]))
        remaining, rows_probs, limit = remaining[~found], rows_probs[~found], limit[~found]
        if remaining.numel() == 0:
            break
    return groups


def mask_outside_nucleus(logits: Any, top_p: Any) -> Any:
    """Set every logit outside its row's nucleus to -inf, in place, and return the tensor.

    A token is kept when its probability is at least that of the least likely token of its
    row's nucleus, so tokens tied with it at the edge are all kept (a sort keeps an arbitrary
    subset of them; the kept mass then exceeds p by theirs). Ties are rare in float32
    logits and common in bfloat16 ones.

    Args:
        logits: (B, V) float tensor (already divided by the temperature).
        top_p: (B,) float tensor of nucleus masses in (0, 1].
    """
    import torch

    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
    least_kept = torch.empty(probs.shape[0], dtype=probs.dtype)
    for group in nuclei(probs, top_p):
        last = (group.probs > 0).sum(dim=-1) - 1  # the nucleus is a prefix of the descending order
        least_kept[group.rows] = group.probs.gather(1, last[:, None]).squeeze(1)
    return logits.masked_fill_(probs < least_kept[:, None], float("-inf"))


def sample_from_probs(probs: Any, uniform: Any, top_p: float) -> Any:
    """One token per row by inverting the cumulative distribution of its nucleus.

    Each row's tokens are taken in descending probability (the order a full sort would give),
    so a row's token depends only on its probabilities and its uniform number. With top_p 1
    there is no nucleus to find: the row's distribution is inverted in vocabulary order, which
    needs no sort at all.

    Args:
        probs: (B, V) float tensor of probabilities.
        uniform: (B,) float tensor of uniform numbers in [0, 1), one per row.
        top_p: The nucleus mass, the same for every row.
    """
    import torch

    if top_p >= 1.0:
        return invert(probs, uniform)
    tokens = torch.empty(probs.shape[0], dtype=torch.long)
    for group in nuclei(probs, torch.full((probs.shape[0],), top_p)):
        position = invert(group.probs, uniform[group.rows])
        tokens[group.rows] = group.ids.gather(1, position[:, None]).squeeze(1)
    return tokens


def invert(weights: Any, uniform: Any) -> Any:
    """The index where each row's cumulative weight first exceeds uniform x its total: always a
    token of positive weight, even when uniform x total rounds up to the total."""
    import torch

    cumulative = weights.cumsum(dim=-1)
    total = cumulative[:, -1]
    target = torch.minimum(uniform * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cumulative, target[:, None], right=True).squeeze(1)
