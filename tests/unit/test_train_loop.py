"""Shared loop: accumulation == one big batch, NaN guard keeps the last good checkpoint, LR schedule."""

import json
from pathlib import Path

import pytest
import torch

from tests.fixtures.science import tiny_transformer
from tests.fixtures.train import CONFIGS
from wmtp_core.config import load_config
from wmtp_core.io import sha256_file
from wmtp_core.train.loop import LoopSettings, NonFiniteError, StageLoop, global_denominators, warmup_cosine
from wmtp_core.train.sampler import ResumableSampler
from wmtp_core.train.stages import Models, WeightedMTPStage, build_strategy
from wmtp_core.train.state import list_checkpoints

VOCAB, N_FUTURE = 61, 3


def _batch(rows: list[int], seq: int = 12) -> dict:
    """Deterministic ragged batch per row index: prompt of 3 tokens, response to a row-dependent length."""
    bsz = len(rows)
    ids = torch.zeros(bsz, seq, dtype=torch.long)
    lengths = torch.tensor([seq - (r % 4) for r in rows])
    for b, r in enumerate(rows):
        g = torch.Generator().manual_seed(r)
        ids[b, : lengths[b]] = torch.randint(3, VOCAB, (int(lengths[b]),), generator=g)
    pos = torch.arange(seq)
    attention = pos[None] < lengths[:, None]
    response = attention & (pos[None] >= 3)
    labels = torch.full((bsz, seq, N_FUTURE), -100)
    for k in range(N_FUTURE):
        s = k + 1
        labels[:, : seq - s, k] = torch.where(response[:, s:], ids[:, s:], -100)
    return {"input_ids": ids, "attention_mask": attention, "response_mask": response, "labels": labels,
            "is_correct": torch.tensor([float(r % 2) for r in rows]), "task_id": [str(r) for r in rows],
            "source": ["t"] * bsz}


class FakeSource:
    def __init__(self, n_rows: int, batch_size: int) -> None:
        self.rows = list(range(n_rows))
        self.sampler = ResumableSampler(n_rows, batch_size, seed=3, shuffle=True)

    def next_batch(self) -> dict:
        return _batch(self.sampler.next_indices())


def _cfg(batch_size: int, grad_accum: int, impl: str = "naive"):
    return load_config(CONFIGS / "defaults.yaml", CONFIGS / "recipe.baseline.yaml", None,
                       [f"train.batch_size={batch_size}", f"train.grad_accum={grad_accum}",
                        f"train.loss_impl={impl}", "optim.lr=0.01", "optim.warmup_ratio=0"])


def _settings(tmp_path: Path, accum: int, every: int = 100) -> LoopSettings:
    return LoopSettings(grad_accum=accum, checkpoint_every=every, keep_checkpoints=5, progress_bar=False,
                        device=torch.device("cpu"), amp_dtype=None, checkpoint_root=tmp_path / "ckpt",
                        config_hash="x")


def _loop(tmp_path: Path, batch_size: int, accum: int, impl: str = "naive", every: int = 100) -> StageLoop:
    cfg = _cfg(batch_size, accum, impl)
    models = Models(tiny_transformer(N_FUTURE, VOCAB, seed=0))
    plan = WeightedMTPStage(cfg, models, build_strategy(cfg, models), FakeSource(16, batch_size), total_steps=4)
    return StageLoop(plan, _settings(tmp_path, accum, every), cfg.optim, lambda m, s: None)


@pytest.mark.parametrize("impl", ["naive", "sequential"])
def test_one_batch_of_8_equals_two_accumulated_batches_of_4(tmp_path: Path, impl: str) -> None:
    big = _loop(tmp_path / "a", 8, 1, impl)
    small = _loop(tmp_path / "b", 4, 2, impl)
    m_big, m_small = big.train_step(), small.train_step()
    assert m_big["loss"] == pytest.approx(m_small["loss"], rel=1e-6)
    assert m_big["denom_labels"] == m_small["denom_labels"]
    # gradients are compared (after the same clipping); Adam's first step ~ lr * sign(g) amplifies rounding
    for (name, p), q in zip(big.plan.modules["model"].named_parameters(),
                            small.plan.modules["model"].parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_nan_loss_stops_naming_step_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    loop = _loop(tmp_path, 2, 1, every=1)
    inner = loop.plan.micro_step

    def poisoned(batch, denoms):
        out = inner(batch, denoms)
        if loop.step + 1 == 3:
            out["loss"] = torch.tensor(float("nan"))
        return out

    loop.plan.micro_step = poisoned
    with pytest.raises(NonFiniteError, match=r"stage2 step 3: loss is nan.*stage2-step-0000002"):
        loop.run()
    ckpts = list_checkpoints(tmp_path / "ckpt", ["stage2"])
    assert [c.step for c in ckpts] == [1, 2]
    manifest = json.loads((ckpts[-1].path / "checkpoint.json").read_text())
    for name, entry in manifest["files"].items():
        assert sha256_file(ckpts[-1].path / name) == entry["sha256"]


def test_nonfinite_gradient_is_caught_before_update(tmp_path: Path) -> None:
    loop = _loop(tmp_path, 2, 1)
    model = loop.plan.modules["model"]
    inner = loop.plan.micro_step

    def poisoned(batch, denoms):
        out = inner(batch, denoms)
        model.output.weight.grad[0, 0] = float("inf")
        return out

    loop.plan.micro_step = poisoned
    before = model.output.weight.detach().clone()
    with pytest.raises(NonFiniteError, match="stage2 step 1: gradient norm is"):
        loop.train_step()
    torch.testing.assert_close(model.output.weight.detach(), before)


def test_warmup_then_cosine_to_floor() -> None:
    f = warmup_cosine(total_steps=10, warmup_ratio=0.2, min_lr_ratio=0.1)
    values = [f(s) for s in range(11)]
    assert values[0] < values[1] < values[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[2:], values[3:]))
    assert values[10] == pytest.approx(0.1)


def test_global_denominators_sum_micro_batches() -> None:
    d = global_denominators([{"labels": torch.tensor(3), "tokens": torch.tensor(0)},
                             {"labels": torch.tensor(5), "tokens": torch.tensor(0)}])
    assert float(d["labels"]) == 8.0 and float(d["tokens"]) == 1.0  # clamped to >= 1


def test_adamw_kernel_follows_config_and_parameters():
    from types import SimpleNamespace

    from wmtp_core.config import OptimConfig
    from wmtp_core.train.loop import _adamw_kernel, build_optimizer

    params = [torch.nn.Parameter(torch.zeros(3, 2)), torch.nn.Parameter(torch.zeros(2))]
    assert _adamw_kernel("auto", params) == {"fused": True}
    assert _adamw_kernel("foreach", params) == {"foreach": True}
    assert _adamw_kernel("loop", params) == {"foreach": False}
    assert _adamw_kernel("auto", [SimpleNamespace(data=torch.zeros(2).as_subclass(torch.nn.Parameter),
                                                  is_floating_point=lambda: True,
                                                  device=torch.device("cpu"))]) == {}  # not a plain tensor
    optimizer = build_optimizer([(params, 1e-3)], OptimConfig())
    assert optimizer.defaults["fused"] is True
    assert build_optimizer([(params, 1e-3)], OptimConfig(implementation="loop")).defaults["foreach"] is False
