"""Exact nucleus (top-p) filtering without a full sort (datagen/engines/nucleus.py): the same
tokens as sorting the whole vocabulary, for peaked rows (found among the top 64), flatter ones
(top 1,024) and flat ones (the full sort), and the same masks as vLLM's own top-p."""

import pytest
import torch

from datagen.engines.nucleus import NUCLEUS_SIZES, mask_outside_nucleus, nuclei, sample_from_probs

VOCAB = 49_152  # SmolLM2's vocabulary


def sorted_nucleus(probs: torch.Tensor, top_p: float) -> list[set[int]]:
    """The reference: sort each row in float64 and keep a token while the mass before it is < p."""
    kept = []
    for row in probs.double():
        values, ids = row.sort(descending=True)
        before = values.cumsum(0) - values
        kept.append(set(ids[before < top_p].tolist()))
    return kept


def mixed_logits(rows_per_kind: int = 4, seed: int = 0) -> torch.Tensor:
    """Rows whose nucleus needs the top 64, the top 1,024 and the whole vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(3 * rows_per_kind, VOCAB, generator=generator)
    scale = torch.tensor([12.0] * rows_per_kind + [4.0] * rows_per_kind + [0.3] * rows_per_kind)
    return base * scale[:, None]


def test_the_nucleus_equals_a_full_sort_at_every_size() -> None:
    logits = mixed_logits()
    probs = logits.softmax(dim=-1)
    groups = nuclei(probs, torch.full((len(probs),), 0.9))

    widths = {group.ids.shape[1]: sorted(group.rows.tolist()) for group in groups}
    assert widths == {NUCLEUS_SIZES[0]: [0, 1, 2, 3], NUCLEUS_SIZES[1]: [4, 5, 6, 7], VOCAB: [8, 9, 10, 11]}
    reference = sorted_nucleus(probs, 0.9)
    for group in groups:
        for row, kept_probs, ids in zip(group.rows.tolist(), group.probs, group.ids, strict=True):
            found = set(ids[kept_probs > 0].tolist())
            if group.ids.shape[1] < VOCAB:
                assert found == reference[row]
            else:  # tens of thousands of tokens: float32 and float64 sums may disagree at the edge
                assert len(found ^ reference[row]) <= 2
            assert kept_probs[kept_probs > 0].sum() >= 0.9 - 1e-4


def test_rows_keep_their_own_top_p() -> None:
    logits = mixed_logits(rows_per_kind=1)[1:2].repeat(3, 1)  # a row of scale 4
    top_p = torch.tensor([0.5, 0.9, 0.99])
    masked = mask_outside_nucleus(logits.clone(), top_p)
    counts = (~masked.isinf()).sum(dim=-1).tolist()
    reference = [len(sorted_nucleus(logits[:1].softmax(-1), p)[0]) for p in top_p.tolist()]
    assert counts == reference and counts[0] < counts[1] < counts[2]


def test_sampling_matches_inverting_the_sorted_nucleus() -> None:
    """The former hf sampler sorted the vocabulary and inverted the nucleus's cumulative
    distribution; the new one must draw the same token from the same uniform number."""
    logits = mixed_logits(rows_per_kind=8, seed=1)[:16]  # the top-64 and top-1,024 rows
    probs = logits.softmax(dim=-1)
    uniform = torch.rand(len(probs), generator=torch.Generator().manual_seed(2))
    values, order = probs.sort(dim=-1, descending=True)
    values = values.masked_fill(values.cumsum(-1) - values >= 0.9, 0.0)
    cumulative = values.cumsum(-1)
    position = torch.searchsorted(cumulative, (uniform * cumulative[:, -1])[:, None], right=True)
    expected = order.gather(-1, position).squeeze(-1)
    assert sample_from_probs(probs, uniform, 0.9).tolist() == expected.tolist()


@pytest.mark.parametrize("top_p", [1.0, 0.7])
def test_samples_follow_the_distribution(top_p: float) -> None:
    """20,000 draws from one row of five tokens: each kept token's frequency within 0.015 of
    its renormalized probability, and no token outside the nucleus is ever drawn."""
    probs = torch.tensor([[0.4, 0.25, 0.2, 0.1, 0.05]]).repeat(20_000, 1)
    uniform = torch.rand(len(probs), generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(sample_from_probs(probs, uniform, top_p), minlength=5).double() / len(probs)
    kept = 5 if top_p == 1.0 else 3  # 0.4 + 0.25 < 0.7 <= 0.4 + 0.25 + 0.2
    expected = torch.zeros(5, dtype=torch.double)
    expected[:kept] = probs[0, :kept].double() / probs[0, :kept].sum()
    assert torch.allclose(counts, expected, atol=0.015)
    assert counts[kept:].sum() == 0


@pytest.mark.vllm
def test_the_mask_equals_vllms_own_top_p() -> None:
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    logits = mixed_logits(rows_per_kind=6, seed=4)[:12]  # peaked and flatter rows
    top_p = torch.tensor([0.95, 0.8, 0.5] * 4)
    ours = mask_outside_nucleus(logits.clone(), top_p)
    theirs = apply_top_k_top_p_pytorch(logits.clone(), None, top_p, allow_cpu_sync=True)
    assert torch.equal(ours.isinf(), theirs.isinf())
    assert torch.equal(ours[~ours.isinf()], logits[~ours.isinf()])  # kept logits are untouched


def test_a_uniform_rounding_up_to_the_total_never_draws_a_zero_weight_token() -> None:
    """uniform x total can round up to the total; the draw must still be a token of the row's
    distribution, not the zero-weight token after it."""
    probs = torch.tensor([[0.3, 0.7, 0.0]])
    assert sample_from_probs(probs, torch.tensor([1.0]), 1.0).tolist() == [1]
    assert sample_from_probs(probs, torch.tensor([1.0]), 0.2).tolist() == [1]  # nucleus {0.7}
