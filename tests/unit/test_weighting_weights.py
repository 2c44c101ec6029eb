"""Weight builder properties: mean 1, bounds, entropy floor, zero-std guard, scopes, config validation."""

from __future__ import annotations

import pydantic
import pytest
import torch

from wmtp_core.weighting.weights import WeightConfig, build_weights, clip_mean_one, normalized_entropy


def _batch(seed: int, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    adv = torch.randn(4, 30, generator=gen) * scale
    mask = torch.zeros(4, 30, dtype=torch.bool)
    for b, (s, e) in enumerate([(3, 30), (10, 22), (0, 5), (12, 29)]):
        mask[b, s:e] = True
    return adv, mask


@pytest.mark.parametrize("normalize", ["batch", "sequence"])
@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_mean_one_and_bounds(normalize: str, temperature: float, seed: int) -> None:
    cfg = WeightConfig(temperature=temperature, normalize=normalize, entropy_floor=0.0)
    adv, mask = _batch(seed, scale=5.0)
    w, stats = build_weights(adv, mask, cfg)
    assert (w[~mask] == 0).all()
    assert w[mask].min() >= cfg.weight_min and w[mask].max() <= cfg.weight_max
    if normalize == "batch":
        assert w[mask].mean().item() == pytest.approx(1.0, abs=1e-5)
    else:
        for b in range(4):
            assert w[b][mask[b]].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert stats["weight_mean"].item() == pytest.approx(w[mask].mean().item(), abs=1e-6)
    if temperature == 0.05:
        assert stats["weight_frac_clipped"].item() > 0  # sharp softmax hits the bounds


def test_higher_advantage_gets_higher_weight() -> None:
    adv, mask = _batch(3)
    cfg = WeightConfig(entropy_floor=0.0, weight_min=0.0, weight_max=1e9, normalize="batch")
    w, _ = build_weights(adv, mask, cfg)
    a, ww = adv[mask], w[mask]
    order = torch.argsort(a)
    assert (ww[order].diff() >= -1e-6).all()
    w, _ = build_weights(adv, mask, cfg.model_copy(update={"normalize": "sequence"}))
    for b in range(4):  # per sequence: monotone within each row
        a, ww = adv[b][mask[b]], w[b][mask[b]]
        assert (ww[torch.argsort(a)].diff() >= -1e-6).all()


@pytest.mark.parametrize("floor", [0.5, 0.9, 0.99])
def test_entropy_floor_enforced(floor: float) -> None:
    adv, mask = _batch(4, scale=10.0)
    cfg = WeightConfig(temperature=0.02, entropy_floor=floor, weight_min=0.0, weight_max=1e9, normalize="batch")
    w, stats = build_weights(adv, mask, cfg)
    p = (w * mask).reshape(1, -1) / mask.sum()
    assert normalized_entropy(p, mask.reshape(1, -1)).item() >= floor - 1e-4
    without, _ = build_weights(adv, mask, cfg.model_copy(update={"entropy_floor": 0.0}))
    p0 = (without * mask).reshape(1, -1) / mask.sum()
    assert normalized_entropy(p0, mask.reshape(1, -1)).item() < floor  # the floor really did something
    assert stats["weight_entropy"].item() >= floor - 1e-4


def test_entropy_floor_survives_clipping() -> None:
    adv, mask = _batch(5, scale=10.0)
    w, _ = build_weights(adv, mask, WeightConfig(temperature=0.05, entropy_floor=0.95, normalize="batch"))
    p = (w * mask).reshape(1, -1) / mask.sum()
    assert normalized_entropy(p, mask.reshape(1, -1)).item() >= 0.95 - 1e-4


def test_zero_and_tiny_std_give_uniform_weights() -> None:
    mask = torch.ones(2, 8, dtype=torch.bool)
    for adv in (torch.zeros(2, 8), torch.full((2, 8), 3.0) + 1e-9 * torch.arange(16.0).view(2, 8)):
        w, stats = build_weights(adv, mask, WeightConfig())
        assert torch.isfinite(w).all()
        assert torch.allclose(w, torch.ones(2, 8), atol=1e-6)
        assert all(torch.isfinite(v) for v in stats.values())


def test_empty_sequence_scope_gives_zero_weights() -> None:
    adv, mask = _batch(6)
    mask[1] = False
    w, _ = build_weights(adv, mask, WeightConfig(normalize="sequence"))
    assert torch.isfinite(w).all() and (w[1] == 0).all()
    assert w[0][mask[0]].mean().item() == pytest.approx(1.0, abs=1e-5)


def test_clip_mean_one_extreme_input() -> None:
    w = torch.tensor([[1000.0, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6]])
    out = clip_mean_one(w, torch.ones_like(w, dtype=torch.bool), 0.1, 5.0)
    assert out.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert out.max().item() <= 5.0 and out.min().item() >= 0.1


def test_config_is_strict() -> None:
    with pytest.raises(pydantic.ValidationError):
        WeightConfig(temprature=1.0)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="contain 1"):
        WeightConfig(weight_min=1.5, weight_max=5.0)
    with pytest.raises(pydantic.ValidationError):
        WeightConfig(temperature=0.0)
