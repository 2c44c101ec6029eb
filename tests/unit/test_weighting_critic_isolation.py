"""The critic is isolated from the policy (its loss moves no policy parameter) and computes in fp32 under autocast."""

from __future__ import annotations

import pytest
import torch
from fixtures.science import ragged_batch, tiny_transformer

from wmtp_core.model.value_head import ValueHead
from wmtp_core.weighting.strategies import VerifiableConfig, count_target_tokens, make_strategy


def _head(dim: int = 32, hidden: int | None = 16, seed: int = 0) -> ValueHead:
    torch.manual_seed(seed)
    head = ValueHead(dim, hidden)
    with torch.no_grad():
        head.net[-1].weight.normal_()
        head.net[-1].bias.fill_(0.3)
    return head


@pytest.mark.parametrize("freeze_trunk", [True, False])
def test_value_loss_reaches_no_policy_parameter(freeze_trunk: bool) -> None:
    model, batch = tiny_transformer(n_future=3), ragged_batch(4, 14, 3, seed=2)
    model.requires_grad_(True)  # Stage 2: every policy parameter trains, the shared final norm included
    if freeze_trunk:  # Stage 1 with a frozen trunk leaves only the heads, norm and output trainable
        for p in [*model.tok_embeddings.parameters(), *model.layers[:-3].parameters()]:
            p.requires_grad_(False)
    head = _head()
    strategy = make_strategy("verifiable", value_head=head,
                             verifiable=VerifiableConfig(train_critic=True, critic={"drift_coef": 0.5}))
    with torch.no_grad():  # anchor away from the head so the clip and drift terms carry gradient too
        strategy._anchor()
        for p in head.parameters():
            p.add_(0.05)
    trunk = model.trunk_forward(batch["input_ids"])  # with grad, as the loop hands it to prepare
    prep = strategy.prepare(batch, model, trunk, count_target_tokens(batch))
    assert prep.aux_loss is not None and prep.aux_loss.item() > 0
    prep.aux_loss.backward()
    leaked = {name: float(p.grad.abs().max()) for name, p in model.named_parameters()
              if p.grad is not None and bool((p.grad != 0).any())}
    assert leaked == {}, f"value loss reached policy parameters: {leaked}"
    assert all(p.grad is not None and bool((p.grad != 0).any()) for p in head.parameters())


def test_train_critic_default_matches_recipe() -> None:
    import yaml

    from wmtp_core import paths

    recipe = yaml.safe_load((paths.REPO_ROOT / "configs" / "recipe.verifiable.yaml").read_text())
    assert VerifiableConfig().train_critic is recipe["verifiable"]["train_critic"] is False
    strategy = make_strategy("verifiable", value_head=_head())
    assert strategy.trainable_modules() == []


@pytest.mark.parametrize("normalize", ["sequence", "batch"])
@pytest.mark.parametrize("mode", ["critic", "shuffled"])
def test_critic_weights_are_fp32_under_bf16_autocast(normalize: str, mode: str) -> None:
    model, batch = tiny_transformer(n_future=2), ragged_batch(4, 30, 2, seed=3)
    head = _head(hidden=None, seed=1)
    with torch.no_grad():
        head.net[-1].weight.mul_(0.2)  # values ~ O(1) with small neighbour differences, like a trained critic
        trunk = model.trunk_forward(batch["input_ids"])

    def run(autocast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = VerifiableConfig(train_critic=True, mode=mode, seed=5, weights={"normalize": normalize})
        strategy = make_strategy("verifiable", value_head=head, verifiable=cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            prep = strategy.prepare(batch, model, trunk.clone(), count_target_tokens(batch))
        assert prep.weights.dtype == torch.float32
        assert prep.aux_loss is not None and prep.aux_loss.dtype == torch.float32
        return prep.weights, prep.metrics

    w_ref, m_ref = run(False)
    w_amp, m_amp = run(True)
    assert (w_amp - w_ref).abs().max().item() <= 1e-6
    for key in ("value_mean", "value_std", "td_mean", "td_std", "td_min", "td_max", "adv_mean", "adv_std",
                "value_loss"):
        assert abs(m_amp[key].item() - m_ref[key].item()) <= 1e-6, key
    # the check can fail: the same head run in bf16 moves the TD errors by far more than the tolerance
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v_bf16 = head.net(model.normed_trunk(trunk))
    v_fp32 = head.net(model.normed_trunk(trunk).float())
    assert (v_bf16.float() - v_fp32).abs().max().item() > 1e-4


@pytest.mark.parametrize("freeze_trunk", [True, False])
def test_stage1_value_loss_is_fp32_under_bf16_autocast(freeze_trunk: bool) -> None:
    from types import SimpleNamespace

    from wmtp_core.config import ResolvedConfig
    from wmtp_core.train.stages import Models, ValueHeadStage
    from wmtp_core.weighting.critic import critic_loss

    cfg = ResolvedConfig(experiment="verifiable", stages=["stage1", "stage2"],
                         stage1={"freeze_trunk": freeze_trunk})
    batch = ragged_batch(4, 30, 2, seed=4)
    model, head = tiny_transformer(n_future=2), _head(hidden=None, seed=2)
    with torch.no_grad():
        head.net[-1].weight.mul_(0.2)
    plan = ValueHeadStage(cfg, Models(model, head), SimpleNamespace(sampler=None, next_batch=None), 1)
    denoms = {"tokens": count_target_tokens(batch).float()}

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the policy's trunk under autocast
        trunk = model.trunk_forward(batch["input_ids"])
    expected, _, _ = critic_loss(head, model.normed_trunk(trunk.float()).float(), batch["response_mask"],
                                 batch["is_correct"], cfg.verifiable.critic, None, denoms["tokens"])  # fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        metrics = plan.micro_step(batch, denoms)
    assert abs(float(metrics["loss"]) - expected.item()) <= 1e-6
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the check can fail: a bf16 critic is off by far more
        bf16, _, _ = critic_loss(head, model.normed_trunk(trunk), batch["response_mask"], batch["is_correct"],
                                 cfg.verifiable.critic, None, denoms["tokens"])
    assert abs(bf16.item() - expected.item()) > 1e-5
    assert any(p.grad is not None for p in model.parameters()) is not freeze_trunk
