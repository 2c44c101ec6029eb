"""Weights normalised over the global micro-batch: 2 gloo ranks holding half the rows each give exactly the weights
one process computes on all rows (critic z-score/softmax/clip, ablation, Rho-1 top-k and soft)."""

from __future__ import annotations

import math

import pytest
import torch
from fixtures.distributed import run_ranks

from wmtp_core import distributed as wd
from wmtp_core.weighting.ablation import ablate_weights
from wmtp_core.weighting.global_batch import over_global_batch, rank_local
from wmtp_core.weighting.rho1 import soft_weights, topk_weights
from wmtp_core.weighting.weights import WeightConfig, build_weights

ROWS, RATIO = 6, 0.6
LENGTHS = [9, 14, 5, 11, 16, 7]  # rank 0 holds rows 0-2 (longest 14), rank 1 rows 3-5 (longest 16)


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    width = max(LENGTHS)
    values = torch.randn(ROWS, width, generator=gen) * 3 + 1
    mask = torch.zeros(ROWS, width, dtype=torch.bool)
    for row, length in enumerate(LENGTHS):
        mask[row, 2:length] = True
    values[1, 4] = values[4, 6] = values[0, 3]  # ties across ranks: top-k breaks them by global position
    return values * mask, mask


def _rank_rows(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows, padded only to its own longest row (as the collator pads a local micro-batch)."""
    values, mask = _global_batch()
    rows = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    width = max(LENGTHS[rows])
    return values[rows, :width].clone(), mask[rows, :width].clone()


def _critic(values, mask, normalize="sequence"):
    w, stats = build_weights(values, mask, WeightConfig(temperature=0.7, z_clip=2.0, entropy_floor=0.8,
                                                        weight_min=0.2, weight_max=3.0, normalize=normalize))
    return ablate_weights(w, mask, "random_matched", torch.Generator().manual_seed(3)), stats


def _critic_batch(values, mask):
    return _critic(values, mask, "batch")


def _topk(values, mask):
    return topk_weights(values, mask, RATIO)


def _soft(values, mask):
    return soft_weights(values, mask, temperature=2.0, weight_min=0.1, weight_max=4.0), None


FNS = {"critic": _critic, "critic_batch": _critic_batch, "topk": _topk, "soft": _soft}


def _on_rank(names: list[str]) -> dict:
    wd.init_distributed("cpu")
    try:
        values, mask = _rank_rows(wd.get_rank(), wd.get_world_size())
        out = {name: over_global_batch(FNS[name], values, mask)[0] for name in names}
        with rank_local():
            out["local_topk"] = over_global_batch(_topk, values, mask)[0]
        return out
    finally:
        wd.destroy_distributed()


def _stitch(parts: list[torch.Tensor]) -> torch.Tensor:
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts])


@pytest.fixture(scope="module")
def two_ranks() -> list[dict]:
    return run_ranks(_on_rank, 2, list(FNS))


@pytest.mark.parametrize("name", list(FNS))
def test_two_ranks_weight_like_one_process_on_the_global_batch(two_ranks, name):
    values, mask = _global_batch()
    expected = FNS[name](values, mask)[0]
    got = _stitch([r[name] for r in two_ranks])
    assert [r[name].shape for r in two_ranks] == [(3, 14), (3, 16)]  # each rank gets its own rows back
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got[mask].mean().item() == pytest.approx(1.0, abs=1e-5)


def test_topk_selects_ceil_ratio_of_the_global_token_count(two_ranks):
    _, mask = _global_batch()
    selected = _stitch([r["topk"] for r in two_ranks]) > 0
    assert int(selected.sum()) == math.ceil(RATIO * int(mask.sum()))
    per_rank = [int((r["topk"] > 0).sum()) for r in two_ranks]
    local = [int(m.sum()) for m in (_rank_rows(0, 2)[1], _rank_rows(1, 2)[1])]
    assert per_rank != [math.ceil(RATIO * n) for n in local]  # the global choice is not two local top-k's


def test_rank_local_normalises_over_this_ranks_rows_only(two_ranks):
    for rank, result in enumerate(two_ranks):
        values, mask = _rank_rows(rank, 2)
        torch.testing.assert_close(result["local_topk"], topk_weights(values, mask, RATIO)[0], rtol=0, atol=0)


def test_single_process_calls_the_function_directly():
    values, mask = _global_batch()
    w, selected = over_global_batch(_topk, values, mask)
    expected_w, expected_sel = topk_weights(values, mask, RATIO)
    assert torch.equal(w, expected_w) and torch.equal(selected, expected_sel)


def test_non_2d_input_is_refused_under_a_process_group():
    def check() -> str:
        wd.init_distributed("cpu")
        try:
            with pytest.raises(ValueError, match=r"expects \(B, S\) tensors, got shape \(4,\)"):
                over_global_batch(_topk, torch.zeros(4), torch.ones(4, dtype=torch.bool))
            return "ok"
        finally:
            wd.destroy_distributed()

    assert run_ranks(check, 2) == ["ok", "ok"]
