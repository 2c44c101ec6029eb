"""Ablations keep the weight distribution (per sequence / per batch) and are reproducible from the seed."""

from __future__ import annotations

import pytest
import torch

from wmtp_core.weighting.ablation import ablate_weights


def _case():
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(4, 25, generator=gen) < 0.7
    w = torch.rand(4, 25, generator=gen) * mask
    return w, mask


def test_shuffled_permutes_within_each_sequence() -> None:
    w, mask = _case()
    out = ablate_weights(w, mask, "shuffled", torch.Generator().manual_seed(1))
    assert (out[~mask] == 0).all()
    for b in range(4):
        assert torch.equal(out[b][mask[b]].sort().values, w[b][mask[b]].sort().values)
    assert not torch.equal(out, w)


def test_random_matched_keeps_batch_distribution_and_mixes_sequences() -> None:
    w, mask = _case()
    out = ablate_weights(w, mask, "random_matched", torch.Generator().manual_seed(1))
    assert (out[~mask] == 0).all()
    assert torch.equal(out[mask].sort().values, w[mask].sort().values)
    moved = [not torch.equal(out[b][mask[b]].sort().values, w[b][mask[b]].sort().values) for b in range(4)]
    assert any(moved)


@pytest.mark.parametrize("mode", ["shuffled", "random_matched"])
def test_seeded_and_reproducible(mode: str) -> None:
    w, mask = _case()
    a = ablate_weights(w, mask, mode, torch.Generator().manual_seed(7))
    b = ablate_weights(w, mask, mode, torch.Generator().manual_seed(7))
    c = ablate_weights(w, mask, mode, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_critic_mode_is_identity_and_bad_mode_rejected() -> None:
    w, mask = _case()
    assert ablate_weights(w, mask, "critic", torch.Generator()) is w
    with pytest.raises(ValueError, match="weighting mode"):
        ablate_weights(w, mask, "noise", torch.Generator())  # type: ignore[arg-type]
