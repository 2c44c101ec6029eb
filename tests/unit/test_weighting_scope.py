"""Normalisation scope of the critic weights against a plain-Python reference (tests/fixtures/weights_reference.py):
per sequence and over the batch."""

from __future__ import annotations

import pytest
import torch
from fixtures.weights_reference import reference_weights

from wmtp_core.weighting.weights import WeightConfig, build_weights


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    adv = torch.randn(4, 24, generator=gen) * torch.tensor([[0.2], [3.0], [1.0], [8.0]])  # very different rows
    mask = torch.zeros(4, 24, dtype=torch.bool)
    for b, (s, e) in enumerate([(2, 24), (5, 17), (0, 9), (11, 23)]):
        mask[b, s:e] = True
    return adv, mask


CONFIGS = [
    {},  # the recipe's: T 1, z_clip 3, floor 0.5, bounds [0.1, 5]
    {"temperature": 0.3, "entropy_floor": 0.9},  # the floor is active
    {"temperature": 0.1, "entropy_floor": 0.0, "weight_max": 2.5},  # clipping is active
]


@pytest.mark.parametrize("normalize", ["sequence", "batch"])
@pytest.mark.parametrize("overrides", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_weights_match_plain_loop_reference(normalize: str, overrides: dict, seed: int) -> None:
    cfg = WeightConfig(normalize=normalize, **overrides)
    adv, mask = _batch(seed)
    w, _ = build_weights(adv, mask, cfg)
    ref = torch.tensor(reference_weights(adv, mask, cfg))
    torch.testing.assert_close(w, ref, rtol=0, atol=2e-4)


def test_sequence_scope_weights_do_not_depend_on_the_neighbours() -> None:
    adv, mask = _batch(2)
    cfg = WeightConfig(normalize="sequence")
    together, _ = build_weights(adv, mask, cfg)
    for b in range(4):
        alone, _ = build_weights(adv[b:b + 1], mask[b:b + 1], cfg)
        torch.testing.assert_close(together[b:b + 1], alone, rtol=0, atol=0)
    batch_scope, _ = build_weights(adv, mask, cfg.model_copy(update={"normalize": "batch"}))
    alone0, _ = build_weights(adv[:1], mask[:1], cfg.model_copy(update={"normalize": "batch"}))
    assert (batch_scope[0] - alone0[0]).abs().max().item() > 0.1  # the batch scope does depend on them
