"""Critic learning: clipped value loss, EMA anchor (+ checkpoint state), drift metrics, learning from both labels."""

from __future__ import annotations

import pytest
import torch
from fixtures.science import ragged_batch, tiny_transformer

from wmtp_core.model.value_head import ValueHead
from wmtp_core.weighting.critic import CriticConfig, EmaAnchor, critic_loss, value_loss
from wmtp_core.weighting.metrics import critic_drift, explained_variance, masked_stats


def test_value_loss_clipping_matches_formula() -> None:
    values = torch.tensor([[0.0, 1.0, 0.5, 2.0]], requires_grad=True)
    old = torch.tensor([[0.0, 0.0, 0.1, 0.0]])
    ret = torch.tensor([[1.0, 0.0, 0.5, 0.5]])
    mask = torch.tensor([[True, True, True, False]])
    loss = value_loss(values, old, ret, mask, clip=0.2)
    # token 0: max(1, 1); token 1: clipped to 0.2, max(1, 0.04); token 2: clipped to 0.3, max(0, 0.04)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 1.0 + 0.04) / 3)
    plain = value_loss(values, None, ret, mask, clip=0.2, denom=10.0)
    assert plain.item() == pytest.approx(0.5 * (1.0 + 1.0 + 0.0) / 10)
    loss.backward()
    assert values.grad[0, 3] == 0


def test_ema_anchor_update_and_state_round_trip() -> None:
    head = ValueHead(4)
    anchor = EmaAnchor(head, decay=0.9)
    with torch.no_grad():
        head.net[0].weight.fill_(1.0)
    anchor.update(head)
    assert torch.allclose(anchor.head.net[0].weight, torch.full((1, 4), 0.1))
    state = anchor.state_dict()
    other = EmaAnchor(ValueHead(4), decay=0.5)
    other.load_state_dict(state)
    assert other.decay == 0.9 and other.updates == 1
    assert torch.equal(other.head.net[0].weight, anchor.head.net[0].weight)
    assert not any(p.requires_grad for p in anchor.head.parameters())


def test_drift_metrics_and_stats() -> None:
    mask = torch.tensor([[True, True, False], [True, True, True]])
    v = torch.tensor([[1.0, 2.0, 9.0], [0.5, 0.0, 1.0]])
    assert critic_drift(v, v, mask, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    assert critic_drift(v, v, mask, "kl").item() == pytest.approx(0.0, abs=1e-6)
    assert critic_drift(v, -v, mask, "cosine").item() == pytest.approx(2.0, abs=1e-6)
    assert critic_drift(v, v.flip(1), mask, "kl").item() > 0
    with pytest.raises(ValueError, match="drift kind"):
        critic_drift(v, v, mask, "l2")  # type: ignore[arg-type]
    assert explained_variance(v, v, mask).item() == pytest.approx(1.0)
    stats = masked_stats(v, mask, "x")
    assert stats["x_max"].item() == 2.0 and stats["x_min"].item() == 0.0


def test_critic_learns_from_correct_and_incorrect_rows() -> None:
    model = tiny_transformer(n_future=2)
    batch = ragged_batch(6, 16, 2, seed=9)
    batch["is_correct"] = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        normed = model.normed_trunk(model.trunk_forward(batch["input_ids"]))
    torch.manual_seed(0)
    head = ValueHead(32, 32)
    cfg = CriticConfig(gamma=1.0, reward_correct=1.0, reward_incorrect=-1.0, value_clip=None)
    for _ in range(200):
        loss, metrics, values = critic_loss(head, normed, batch["response_mask"], batch["is_correct"], cfg)
        head.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in head.parameters():
                p.sub_(0.3 * p.grad)
    mask = batch["response_mask"].clone()
    mask[:, 0] = False
    per_row = (values.detach() * mask).sum(1) / mask.sum(1)
    assert (per_row[0::2] > 0.5).all() and (per_row[1::2] < -0.5).all()
    assert metrics["explained_variance"].item() > 0.8


def test_critic_loss_with_anchor_reports_drift() -> None:
    model = tiny_transformer(n_future=2)
    batch = ragged_batch(3, 12, 2, seed=1)
    normed = model.normed_trunk(model.trunk_forward(batch["input_ids"])).detach()
    head = ValueHead(32)
    anchor = EmaAnchor(head)
    with torch.no_grad():
        head.net[0].weight.normal_()
    cfg = CriticConfig(drift_coef=0.5)
    loss, metrics, _ = critic_loss(head, normed, batch["response_mask"], batch["is_correct"], cfg, anchor)
    base, _, _ = critic_loss(head, normed, batch["response_mask"], batch["is_correct"],
                             cfg.model_copy(update={"drift_coef": 0.0}), anchor)
    assert metrics["drift_penalty"].item() > 0
    assert loss.item() == pytest.approx(base.item() + 0.5 * metrics["drift_penalty"].item(), rel=1e-5)
    assert {"value_loss", "explained_variance", "critic_drift", "value_mean"} <= set(metrics)
