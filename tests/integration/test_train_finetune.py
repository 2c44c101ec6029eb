"""model.finetune: LoRA (peft) and heads-only training through the real run: exact resume, merged export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures.models import tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from wmtp_core.artifacts.layout import ModelLayout
from wmtp_core.model.adapter import MetaLlamaMTPAdapter, load_weights
from wmtp_core.train.run import run_training

pytestmark = pytest.mark.slow
LORA = ["model.finetune=lora", "model.lora.rank=4", "model.lora.alpha=8", "optim.lr=0.01",
        "optim.weight_decay=0.0", "logging.histogram_every=1000", "train.checkpoint_every=1000"]
PROJ = {"wq": "attention", "wk": "attention", "wv": "attention", "wo": "attention",
        "w1": "feed_forward", "w2": "feed_forward", "w3": "feed_forward"}


def _losses(result) -> list[float]:
    return [row["loss"] for row in json.loads(Path(result.history_path).read_text())["stage2"]]


def _last_checkpoint_weights(result) -> dict[str, torch.Tensor]:
    refs = json.loads((result.output_dir / "checkpoints.json").read_text())
    return load_file(str(Path(refs["stage2"]["path"]) / "model.safetensors"))


def test_lora_resume_exact_and_export_is_merged(tmp_path: Path) -> None:
    model = tiny_model_dir(tmp_path)
    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, "baseline", model, data, overrides=[*LORA, "train.max_steps=4", "train.grad_accum=1"])
    full = run_training(cfg, run_name="full")
    part = run_training(cfg, run_name="split", stop_at="stage2:2")
    resumed = run_training(cfg, run_name="split", resume="auto")
    assert _losses(resumed) == _losses(full)  # adapters + optimizer state restored exactly
    assert resumed.weights_sha256 == full.weights_sha256 and not part.completed

    base = load_weights(ModelLayout(model))
    ckpt = _last_checkpoint_weights(full)
    exported = MetaLlamaMTPAdapter.from_pretrained(full.model_dir).model.state_dict()  # plain Meta keys
    assert not any("lora" in k or "base_layer" in k for k in exported)
    scale = 8 / 4
    changed = 0
    for key, value in base.items():
        value = value.float()
        block, _, leaf = key.rpartition(".")
        name = block.rsplit(".", 1)[-1]
        if name in PROJ and leaf == "weight":
            a, b = ckpt[f"{block}.lora_A.default.weight"], ckpt[f"{block}.lora_B.default.weight"]
            assert torch.equal(ckpt[f"{block}.base_layer.weight"], value)  # base frozen
            expected = value + scale * (b @ a)
            torch.testing.assert_close(exported[key], expected, rtol=1e-5, atol=1e-6)
            changed += int(not torch.equal(exported[key], value))
        elif key in exported:
            assert torch.equal(exported[key], value), key  # embedding, norms, output untouched
    assert changed > 0


@pytest.mark.parametrize("experiment", ["verifiable", "rho1"])
def test_lora_runs_for_other_experiments(tmp_path: Path, experiment: str) -> None:
    model = tiny_model_dir(tmp_path)
    ref = tiny_model_dir(tmp_path, seed=1, name="reference") if experiment == "rho1" else None
    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, experiment, model, data, reference_dir=ref,
                       overrides=[*LORA, "train.max_steps=1", "stage1.max_steps=1"])
    result = run_training(cfg, run_name="lora")
    assert result.completed and result.model_dir is not None
    exported = MetaLlamaMTPAdapter.from_pretrained(result.model_dir).model.state_dict()
    assert not any("lora" in k for k in exported)
    if ref is not None:  # the reference is loaded as is, without adapters
        assert not any("lora" in k for k in load_weights(ModelLayout(ref)))


def test_heads_trains_only_head_blocks(tmp_path: Path) -> None:
    model = tiny_model_dir(tmp_path)
    data = write_tiny_datasets(tmp_path / "datasets")
    cfg = train_config(tmp_path, "baseline", model, data,
                       overrides=["model.finetune=heads", "optim.lr=0.01", "train.max_steps=2"])
    result = run_training(cfg, run_name="heads")
    base = load_weights(ModelLayout(model))
    exported = MetaLlamaMTPAdapter.from_pretrained(result.model_dir)
    n_trunk = exported.args.n_trunk_layers
    heads = (f"layers.{n_trunk}.", "extra_heads.")
    state = exported.model.state_dict()
    for key, value in base.items():
        if key not in state:
            continue
        if key.startswith(heads):
            continue
        assert torch.equal(state[key], value.float()), key
    assert any(not torch.equal(state[k], base[k].float()) for k in state if k.startswith(heads) and k.endswith("wq.weight"))


def test_cpu_offload_matches_plain_run(tmp_path: Path) -> None:
    """FSDP2 CPUOffloadPolicy in one process (its own one-rank group; pinned memory only on CUDA): the same
    losses and weights as the plain run, up to the AdamW kernel (foreach on DTensors vs fused)."""
    import torch.distributed as dist

    model = tiny_model_dir(tmp_path)
    data = write_tiny_datasets(tmp_path / "datasets")
    common = ["train.max_steps=2", "optim.lr=0.01"]
    plain = run_training(train_config(tmp_path, "baseline", model, data, overrides=common), run_name="plain")
    cfg = train_config(tmp_path, "baseline", model, data, overrides=[*common, "model.cpu_offload=true"])
    offload = run_training(cfg, run_name="offload")
    assert not dist.is_initialized()  # the run's own group is gone
    torch.testing.assert_close(_losses(offload), _losses(plain), rtol=1e-5, atol=1e-6)
    a = MetaLlamaMTPAdapter.from_pretrained(plain.model_dir).model.state_dict()
    b = MetaLlamaMTPAdapter.from_pretrained(offload.model_dir).model.state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
