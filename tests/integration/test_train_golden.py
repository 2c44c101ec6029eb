"""Golden losses: each experiment's first optimizer step against an independent computation, plus regression values.

`test_first_step_loss_matches_independent_computation` is the check of correctness: the first step's loss of each
experiment (baseline, verifiable, rho1; and Stage 1's first value loss) is recomputed outside the training
loop — a plain loop over the model's full logits (``model(input_ids)``), the collator's labels of the first sampled
micro-batch, and the strategy's weights re-derived by the plain-Python references of
tests/fixtures/weights_reference.py (GAE + per-sequence weights for the critic, top-k of the excess loss for Rho-1).

`REGRESSION` holds values RECORDED FROM THIS CODE (CPU, torch 2.x, one thread; tiny fixture model of
tests/fixtures/models.py, rows of tests/fixtures/train.py). They prove nothing about correctness; they only flag any
change of the first three steps. Regenerate after an intended change of the model, data, loss or weighting:

    uv run python -c "import json, sys, pathlib, torch; torch.set_num_threads(1); sys.path.insert(0, '.');
    from tests.integration.test_train_golden import run_golden;
    [print(e, json.dumps(run_golden(pathlib.Path('/tmp/golden') / e, e)[0])) for e in
     ('baseline', 'verifiable', 'rho1')]"

and paste the printed lists into REGRESSION (explain the change in the commit message).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from tests.fixtures.weights_reference import reference_advantages, reference_topk, reference_weights
from wmtp_core.config import ResolvedConfig
from wmtp_core.train.run import TrainResult, run_training

# Regression values (recorded from this code, not independent): head_reduction sum, per-sequence critic weights.
REGRESSION: dict[str, dict[str, list[float]]] = {
    "baseline": {"stage2": [35.951385, 34.967278, 34.550194]},
    "verifiable": {"stage1": [0.240742, 0.420644], "stage2": [35.995384, 34.879189, 34.441673]},
    "rho1": {"stage2": [36.140163, 35.860737, 35.77766]},
}

OVERRIDES = ["train.max_steps=3", "stage1.max_steps=2", "train.grad_accum=1", "optim.lr=0.001",
             "logging.histogram_every=1000", "train.checkpoint_every=1000"]


def run_golden(tmp_path: Path, experiment: str) -> tuple[dict[str, list[float]], ResolvedConfig, TrainResult]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    model = tiny_model_dir(tmp_path)
    ref = tiny_model_dir(tmp_path, seed=1, name="reference") if experiment == "rho1" else None
    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, experiment, model, data, reference_dir=ref, overrides=OVERRIDES)
    result = run_training(cfg, run_name="golden")
    history = json.loads(Path(result.history_path).read_text())
    return {stage: [round(row["loss"], 6) for row in rows] for stage, rows in history.items()}, cfg, result


@pytest.fixture(scope="module", params=["baseline", "verifiable", "rho1"])
def golden(request, tmp_path_factory) -> tuple[str, dict[str, list[float]], ResolvedConfig, TrainResult]:
    experiment = request.param
    return (experiment, *run_golden(tmp_path_factory.mktemp(experiment), experiment))


def _first_batch(cfg: ResolvedConfig, stage: str, tokenizer: Any, n_future: int) -> dict[str, Any]:
    """The first micro-batch of a stage, drawn as the run draws it: its sampler seed, then the collator."""
    from wmtp_core.train.data import BatchSource, load_rows
    from wmtp_core.train.sampler import ResumableSampler

    rows = load_rows(cfg, include_incorrect=stage == "stage1")
    seed = cfg.run.seed + {"stage1": 1000, "stage2": 2000}[stage]
    sampler = ResumableSampler(len(rows), cfg.train.batch_size, seed, cfg.data.shuffle)
    return BatchSource(rows, tokenizer, cfg.data.max_len, n_future, sampler, torch.device("cpu")).next_batch()


def _episodes(batch: dict[str, Any]) -> list[list[int]]:
    """Per row: its target positions u (response tokens, never position 0), in order."""
    mask = batch["response_mask"].bool()
    return [[u for u in range(1, mask.shape[1]) if mask[b, u]] for b in range(mask.shape[0])]


def _critic_weights(cfg: ResolvedConfig, model: Any, head: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Plain reference: V(s_u) = head(norm(trunk))[u - 1], GAE per row, then the recipe's weights per scope."""
    c = cfg.verifiable.critic
    with torch.no_grad():
        out = head(model.norm(model.trunk_forward(batch["input_ids"])).float())  # (B, S): value after token t
    adv = torch.zeros(out.shape)
    mask = torch.zeros(out.shape, dtype=torch.bool)
    for b, positions in enumerate(_episodes(batch)):
        reward = c.reward_correct if batch["is_correct"][b] > 0.5 else c.reward_incorrect
        values = [float(out[b, u - 1]) for u in positions]
        for u, a in zip(positions, reference_advantages(values, reward, c.gamma, c.lam), strict=True):
            adv[b, u], mask[b, u] = a, True
    return torch.tensor(reference_weights(adv, mask, cfg.verifiable.weights))


def _rho1_weights(cfg: ResolvedConfig, logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor
                  ) -> torch.Tensor:
    """Plain reference: excess = CE_model - CE_ref of head 0 at the target position t + 1; top-k of the batch."""
    excess = {}
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            label = int(labels[b, t, 0])
            if label != -100:
                ce = -torch.log_softmax(logits[b, t, 0].double(), -1)[label]
                ce_ref = -torch.log_softmax(ref_logits[b, t, 0].double(), -1)[label]
                excess[(b, t + 1)] = float(ce - ce_ref)
    w = torch.zeros(labels.shape[:2])
    for (b, u), value in reference_topk(excess, cfg.rho1.ratio).items():
        w[b, u] = value
    return w


def _plain_mtp_loss(logits: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, reduction: str) -> float:
    """sum_k sum_{b,t} w[b, t+k+1] CE_k[b, t] / (positions with a next-token label), / F for `mean`."""
    n_heads = labels.shape[-1]
    total, positions = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            positions += int(labels[b, t, 0] != -100)
            for k in range(n_heads):
                label = int(labels[b, t, k])
                if label != -100:
                    ce = -torch.log_softmax(logits[b, t, k].double(), -1)[label]
                    total += float(w[b, t + k + 1]) * float(ce)
    return total / positions / (n_heads if reduction == "mean" else 1)


def _stage1_first_loss(cfg: ResolvedConfig, batch: dict[str, Any]) -> float:
    """Value head starts at V = 0: loss = 0.5 * mean over target tokens of the return (gamma^(T-u) R)^2."""
    c = cfg.verifiable.critic
    total, count = 0.0, 0
    for b, positions in enumerate(_episodes(batch)):
        reward = c.reward_correct if batch["is_correct"][b] > 0.5 else c.reward_incorrect
        for i in range(len(positions)):
            total += 0.5 * (c.gamma ** (len(positions) - 1 - i) * reward) ** 2
            count += 1
    return total / count


def test_first_step_loss_matches_independent_computation(golden) -> None:
    from wmtp_core.model.adapter import MetaLlamaMTPAdapter
    from wmtp_core.model.value_head import ValueHead

    experiment, got, cfg, result = golden
    assert cfg.train.grad_accum == 1 and cfg.train.head_reduction == "sum"
    adapter = MetaLlamaMTPAdapter.from_pretrained(cfg.model_dir, device="cpu")  # the weights before step 1
    model = adapter.model
    batch = _first_batch(cfg, "stage2", adapter.tokenizer, model.n_future)
    labels = batch["labels"][..., :model.n_future]
    with torch.no_grad():
        logits = model(batch["input_ids"])  # (B, S, F, V) full logits of every head
    if experiment == "baseline":
        w = batch["response_mask"].float()
        w[:, 0] = 0.0
    elif experiment == "verifiable":
        assert cfg.stage1.freeze_trunk and not cfg.verifiable.train_critic  # Stage 2 starts from these weights
        assert cfg.verifiable.weights.normalize == "sequence"
        head = ValueHead.load(result.value_head_path)  # the Stage 1 critic, unchanged in Stage 2
        w = _critic_weights(cfg, model, head, batch)
        stage1 = _first_batch(cfg, "stage1", adapter.tokenizer, model.n_future)
        assert got["stage1"][0] == pytest.approx(_stage1_first_loss(cfg, stage1), rel=1e-5)
    else:
        ref = MetaLlamaMTPAdapter.from_pretrained(cfg.resolved_path("reference_model_dir"), device="cpu").model
        with torch.no_grad():
            ref_logits = ref(batch["input_ids"], n_heads=1)
        w = _rho1_weights(cfg, logits, ref_logits, labels)
    expected = _plain_mtp_loss(logits, labels, w, cfg.train.head_reduction)
    assert got["stage2"][0] == pytest.approx(expected, rel=1e-6)  # measured agreement: < 1e-7
    if experiment != "baseline":  # the loss of a random model barely depends on the weights: check them too
        first = json.loads(Path(result.history_path).read_text())["stage2"][0]
        target = w[batch["response_mask"].bool() & (torch.arange(w.shape[1]) > 0)]
        assert first["weight_std" if experiment == "verifiable" else "rho1_selected_frac"] == pytest.approx(
            float(target.std(unbiased=False)) if experiment == "verifiable" else float((target > 0).float().mean()),
            rel=1e-4)
        if experiment == "verifiable":
            for key, value in (("weight_min", target.min()), ("weight_max", target.max())):
                assert first[key] == pytest.approx(float(value), rel=1e-4), key


def test_first_steps_match_regression_values(golden) -> None:
    experiment, got, _, _ = golden
    expected = REGRESSION[experiment]
    assert set(got) == set(expected)
    for stage, values in expected.items():
        assert got[stage] == pytest.approx(values, rel=2e-4, abs=1e-5), stage
