"""Rho-1: exact ceil(k*N) selection, deterministic ties, loss == mean over selected, soft weights, KL."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from fixtures.science import ragged_batch, tiny_transformer

from wmtp_core.losses import count_valid_labels, weighted_mtp_loss
from wmtp_core.weighting.rho1 import (
    excess_loss,
    next_token_kl,
    soft_weights,
    to_target_positions,
    topk_select,
    topk_weights,
)


@pytest.mark.parametrize("ratio", [0.6, 0.07, 0.1, 1 / 3, 1.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selects_exactly_ceil_ratio_n(ratio: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    excess = torch.randn(3, 41, generator=gen)
    mask = torch.rand(3, 41, generator=gen) < 0.7
    n = int(mask.sum())
    selected = topk_select(excess, mask, ratio)
    assert int(selected.sum()) == math.ceil(Fraction(str(ratio)) * n)
    assert not (selected & ~mask).any()
    chosen, rest = excess[selected], excess[mask & ~selected]
    if rest.numel():
        assert chosen.min() >= rest.max()


def test_ties_broken_by_position() -> None:
    excess = torch.zeros(2, 5)
    mask = torch.ones(2, 5, dtype=torch.bool)
    selected = topk_select(excess, mask, 0.3)  # ceil(3) of 10, all tied -> the first three positions
    assert selected.flatten().tolist() == [True, True, True] + [False] * 7


def test_topk_loss_equals_mean_ce_over_selected_tokens() -> None:
    model = tiny_transformer(n_future=1)
    batch = ragged_batch(3, 14, 1, seed=3)
    labels = batch["labels"]
    trunk = model.trunk_forward(batch["input_ids"])
    excess_t = torch.randn(3, 14, generator=torch.Generator().manual_seed(1))
    excess, mask = to_target_positions(excess_t, labels[..., 0] != -100)
    w, selected = topk_weights(excess, mask, 0.6)
    out = weighted_mtp_loss(model, trunk, labels, w, count_valid_labels(labels), impl="naive")
    ce_target, _ = to_target_positions(out.head_ce[..., 0], labels[..., 0] != -100)
    expected = ce_target[selected].mean()
    assert int(selected.sum()) == math.ceil(Fraction("0.6") * int(mask.sum()))
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert w[mask].mean().item() == pytest.approx(1.0, rel=1e-6)


def test_to_target_positions_shift() -> None:
    vals, mask = to_target_positions(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[True, False, True]]))
    assert vals.tolist() == [[0.0, 1.0, 2.0]] and mask.tolist() == [[False, True, False]]


def test_excess_is_detached_difference() -> None:
    a = torch.tensor([2.0, 1.0], requires_grad=True)
    out = excess_loss(a, torch.tensor([0.5, 1.5]))
    assert out.tolist() == [1.5, -0.5] and not out.requires_grad


def test_soft_weights_mean_one_monotone_and_clipped() -> None:
    gen = torch.Generator().manual_seed(4)
    excess = torch.randn(2, 20, generator=gen)
    mask = torch.rand(2, 20, generator=gen) < 0.8
    w = soft_weights(excess, mask, temperature=0.7)
    assert w[mask].mean().item() == pytest.approx(1.0, abs=1e-5) and (w[~mask] == 0).all()
    order = torch.argsort(excess[mask])
    assert (w[mask][order].diff() >= -1e-6).all()
    wc = soft_weights(excess, mask, temperature=0.1, weight_min=0.2, weight_max=3.0)
    assert wc[mask].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert wc[mask].min() >= 0.2 and wc[mask].max() <= 3.0


def test_next_token_kl() -> None:
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(next_token_kl(logits, logits), torch.zeros(4), atol=1e-6)
    other = logits.flip(1)
    p = torch.softmax(logits, -1)
    ref = (p * (torch.log_softmax(logits, -1) - torch.log_softmax(other, -1))).sum(-1)
    assert torch.allclose(next_token_kl(logits, other), ref, atol=1e-6)


def test_bad_ratio_rejected() -> None:
    with pytest.raises(ValueError, match="ratio"):
        topk_select(torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), 0.0)
