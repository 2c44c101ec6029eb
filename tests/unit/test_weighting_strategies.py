"""Strategies: one call sequence for all experiments; Rho-1 reuses the loss forward; verifiable state resumes."""

from __future__ import annotations

import pytest
import torch
from fixtures.science import ragged_batch, tiny_transformer

from wmtp_core.losses import count_valid_labels, weighted_mtp_loss
from wmtp_core.model.value_head import ValueHead
from wmtp_core.weighting.rho1 import next_token_kl, to_target_positions
from wmtp_core.weighting.strategies import (
    Rho1Config,
    VerifiableConfig,
    count_target_tokens,
    make_strategy,
    target_mask,
)


def _step(strategy, model, batch, impl):
    model.zero_grad(set_to_none=True)
    trunk = model.trunk_forward(batch["input_ids"])
    prep = strategy.prepare(batch, model, trunk, count_target_tokens(batch))
    out = weighted_mtp_loss(model, trunk, batch["labels"], prep.weights, count_valid_labels(batch["labels"]),
                            impl=impl, chunk_size=8, logits_hook=prep.logits_hook)
    out.backward()
    if prep.aux_loss is not None:
        prep.aux_loss.backward()
    return prep, out, {**prep.collect_metrics(), **out.metrics}


def test_baseline_weights_are_ones_on_response_tokens() -> None:
    model, batch = tiny_transformer(n_future=3), ragged_batch(3, 12, 3, seed=1)
    _, out, _ = _step(make_strategy("baseline"), model, batch, "naive")
    assert torch.equal(out.weights, target_mask(batch).float())


@pytest.mark.parametrize("mode", ["critic", "shuffled", "random_matched", "position_matched"])
def test_verifiable_weights_metrics_and_value_grads(mode: str) -> None:
    model, batch = tiny_transformer(n_future=3), ragged_batch(4, 14, 3, seed=2)
    head = ValueHead(32, 16)
    with torch.no_grad():
        head.net[-1].weight.normal_()
    strategy = make_strategy("verifiable", value_head=head,
                             verifiable=VerifiableConfig(mode=mode, seed=3, train_critic=True))
    prep, out, metrics = _step(strategy, model, batch, "sequential")
    mask = target_mask(batch)
    assert out.weights[mask].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert (out.weights[~mask] == 0).all()
    assert {"td_mean", "td_std", "adv_mean", "weight_entropy", "weight_frac_clipped", "value_loss",
            "explained_variance", "critic_drift", "ce_head2", "loss"} <= set(metrics)
    assert all(p.grad is not None for p in head.parameters())
    assert strategy.trainable_modules() == [head]
    before = [p.clone() for p in strategy.anchor.head.parameters()]
    with torch.no_grad():
        for p in head.parameters():
            p.add_(1.0)
    strategy.after_optimizer_step()
    assert any(not torch.equal(a, b) for a, b in zip(before, strategy.anchor.head.parameters()))


def test_verifiable_same_under_no_grad_validation() -> None:
    model, batch = tiny_transformer(n_future=2), ragged_batch(3, 12, 2, seed=4)
    head = ValueHead(32)
    with torch.no_grad():
        head.net[-1].weight.normal_()
    strategy = make_strategy("verifiable", value_head=head)
    trunk = model.trunk_forward(batch["input_ids"])
    w_train = strategy.prepare(batch, model, trunk).weights
    with torch.no_grad():
        prep = strategy.prepare(batch, model, trunk)
    assert prep.aux_loss is None
    assert torch.allclose(prep.weights, w_train)


def test_verifiable_state_dict_resumes_ablation_stream() -> None:
    model, batch = tiny_transformer(n_future=2), ragged_batch(3, 12, 2, seed=5)
    head = ValueHead(32)
    with torch.no_grad():
        head.net[-1].weight.normal_()
    cfg = VerifiableConfig(mode="shuffled", seed=11)
    a = make_strategy("verifiable", value_head=head, verifiable=cfg)
    trunk = model.trunk_forward(batch["input_ids"]).detach()
    a.prepare(batch, model, trunk)
    state = a.state_dict()
    next_a = a.prepare(batch, model, trunk).weights
    b = make_strategy("verifiable", value_head=head, verifiable=cfg)
    b.load_state_dict(state)
    assert torch.equal(b.prepare(batch, model, trunk).weights, next_a)


def test_constant_critic_uses_the_stage1_mean_instead_of_v() -> None:
    from wmtp_core.weighting.gae import gae, terminal_rewards
    from wmtp_core.weighting.weights import build_weights

    model, batch = tiny_transformer(n_future=2), ragged_batch(4, 16, 2, seed=6)
    head = ValueHead(32)
    with torch.no_grad():
        head.net[-1].weight.normal_()
    cfg = VerifiableConfig(mode="constant_critic")
    trunk = model.trunk_forward(batch["input_ids"]).detach()
    with pytest.raises(ValueError, match="Stage 1 mean value"):
        make_strategy("verifiable", value_head=head, verifiable=cfg).prepare(batch, model, trunk)
    strategy = make_strategy("verifiable", value_head=head, verifiable=cfg, constant_value=0.4)
    w = strategy.prepare(batch, model, trunk).weights
    mask = target_mask(batch)
    c = cfg.critic
    values = torch.full(mask.shape, 0.4)  # reference: the same pipeline from a constant V
    expected, _ = build_weights(gae(values, terminal_rewards(batch["is_correct"], mask), mask, c.gamma, c.lam),
                                mask, cfg.weights)
    assert torch.allclose(w, expected, atol=1e-6)
    with torch.no_grad():
        head.net[-1].weight.mul_(-3.0)  # the head changes; the constant critic's weights do not
    assert torch.allclose(strategy.prepare(batch, model, trunk).weights, expected, atol=1e-6)
    assert strategy.state_dict()["constant_value"] == 0.4


def test_stage1_mean_value_is_the_tail_mean_of_value_mean() -> None:
    from wmtp_core.train.stages import stage1_mean_value

    history = [{"step": float(i), "value_mean": float(i)} for i in range(1, 21)]
    assert stage1_mean_value(history) == pytest.approx((19 + 20) / 2)  # last 10% = 2 steps
    assert stage1_mean_value(history[:3]) == pytest.approx(3.0)
    assert stage1_mean_value([]) is None


class _CountingModel(torch.nn.Module):
    """Wraps the policy to count trunk forwards (Rho-1 must not run a second policy forward)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def trunk_forward(self, tokens):
        self.calls += 1
        return self.inner.trunk_forward(tokens)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


@pytest.mark.parametrize("impl", ["naive", "sequential"])
def test_rho1_one_policy_forward_topk_and_kl(impl: str) -> None:
    policy = _CountingModel(tiny_transformer(n_future=3, seed=0))
    ref = tiny_transformer(n_future=1, seed=1)
    batch = ragged_batch(3, 14, 3, seed=6)
    strategy = make_strategy("rho1", ref_model=ref, rho1=Rho1Config(ratio=0.6, chunk_size=5))
    _, out, metrics = _step(strategy, policy, batch, impl)
    assert policy.calls == 1
    valid0 = batch["labels"][..., 0] != -100
    with torch.no_grad():
        ref_logits = ref(batch["input_ids"], n_heads=1)[:, :, 0]
        model_logits = policy.inner(batch["input_ids"], n_heads=1)[:, :, 0]
    ref_ce = torch.nn.functional.cross_entropy(ref_logits.transpose(1, 2), batch["labels"][..., 0],
                                               ignore_index=-100, reduction="none")
    excess, mask = to_target_positions(out.head_ce[..., 0] - ref_ce, valid0)
    n = int(mask.sum())
    k = -(-3 * n // 5)
    selected = out.weights > 0
    assert int(selected.sum()) == k
    assert torch.allclose(out.weights[selected], torch.full((k,), n / k))
    assert excess[selected].min() >= excess[mask & ~selected].max() - 1e-5
    kl = next_token_kl(model_logits[valid0], ref_logits[valid0]).mean()
    assert metrics["rho1_kl_model_ref"].item() == pytest.approx(kl.item(), rel=1e-4, abs=1e-6)
    assert metrics["rho1_selected_frac"].item() == pytest.approx(k / n)


def test_rho1_soft_mode_and_vocab_check() -> None:
    policy, batch = tiny_transformer(n_future=2), ragged_batch(2, 12, 2, seed=7)
    strategy = make_strategy("rho1", ref_model=tiny_transformer(n_future=1, seed=2),
                             rho1=Rho1Config(mode="soft", temperature=0.5, weight_min=0.1, weight_max=4.0))
    _, out, _ = _step(strategy, policy, batch, "sequential")
    mask = target_mask(batch)
    assert out.weights[mask].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert out.weights[mask].max() <= 4.0 and out.weights[mask].min() >= 0.1
    bad = make_strategy("rho1", ref_model=tiny_transformer(n_future=1, vocab=70))
    with pytest.raises(ValueError, match="share the tokenizer"):
        bad.prepare(batch, policy, policy.trunk_forward(batch["input_ids"]))


def test_make_strategy_errors() -> None:
    with pytest.raises(ValueError, match="value_head"):
        make_strategy("verifiable")
    with pytest.raises(ValueError, match="ref_model"):
        make_strategy("rho1")
    with pytest.raises(ValueError, match="weighting strategy"):
        make_strategy("other")  # type: ignore[arg-type]


def test_verifiable_anchor_starts_from_the_head_at_first_use() -> None:
    model, batch = tiny_transformer(n_future=2), ragged_batch(2, 10, 2, seed=8)
    head = ValueHead(32)
    strategy = make_strategy("verifiable", value_head=head)
    with torch.no_grad():  # e.g. Stage 1 weights loaded after the strategy was built
        head.net[-1].weight.fill_(0.5)
    strategy.prepare(batch, model, model.trunk_forward(batch["input_ids"]).detach())
    assert torch.equal(strategy.anchor.head.net[-1].weight, head.net[-1].weight)
    fresh = make_strategy("verifiable", value_head=ValueHead(32))
    fresh.load_state_dict(strategy.state_dict())
    assert torch.equal(fresh.anchor.head.net[-1].weight, head.net[-1].weight)


@pytest.mark.parametrize("kl_rows", [None, 7])
def test_rho1_kl_monitor_over_evenly_spaced_rows(kl_rows) -> None:
    policy, ref = tiny_transformer(n_future=2, seed=0), tiny_transformer(n_future=1, seed=1)
    batch = ragged_batch(3, 14, 2, seed=9)
    strategy = make_strategy("rho1", ref_model=ref, rho1=Rho1Config(chunk_size=4, kl_rows=kl_rows))
    _, _, metrics = _step(strategy, policy, batch, "sequential")
    valid0 = (batch["labels"][..., 0] != -100).flatten()
    rows = valid0.nonzero().squeeze(1)
    if kl_rows is not None:
        rows = rows[:: -(-rows.numel() // kl_rows)]
        assert 0 < rows.numel() <= kl_rows < int(valid0.sum())
    with torch.no_grad():
        ref_logits = ref(batch["input_ids"], n_heads=1)[:, :, 0].flatten(0, 1)
        model_logits = policy(batch["input_ids"], n_heads=1)[:, :, 0].flatten(0, 1)
    kl = next_token_kl(model_logits[rows], ref_logits[rows]).mean()
    assert metrics["rho1_kl_model_ref"].item() == pytest.approx(kl.item(), rel=1e-4, abs=1e-6)
