"""MetaLlamaMTPAdapter: loading checks, dtype/device, delegation, save_pretrained round trip, a training step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.fixtures.models import small_tokenizer, tiny_model_dir
from wmtp_core.artifacts.errors import ChecksumMismatch, ConfigMismatch
from wmtp_core.artifacts.layout import ModelLayout
from wmtp_core.artifacts.verify import verify_model_dir
from wmtp_core.model.adapter import MetaLlamaMTPAdapter


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tiny_model_dir(tmp_path, tokenizer_model=small_tokenizer())


def _tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(0))


def test_from_pretrained_exposes_model_tokenizer_metadata(model_dir: Path) -> None:
    adapter = MetaLlamaMTPAdapter.from_pretrained(model_dir)
    assert adapter.model_dir == model_dir and adapter.metadata["kind"] == "base"
    assert adapter.tokenizer.n_words == adapter.args.vocab_size == 400
    assert adapter.dtype == torch.float32 and adapter.device.type == "cpu"
    tokens = _tokens(400)
    with torch.no_grad():
        logits = adapter.forward(tokens)
        trunk = adapter.trunk_forward(tokens)
        assert torch.equal(adapter.head_logits(trunk, 2), logits[:, :, 2])
        assert torch.equal(adapter.model.output(adapter.model.norm(adapter.head_hidden(trunk, 1))), logits[:, :, 1])
        assert adapter.normed_trunk(trunk).shape == (2, 9, adapter.args.dim)


def test_dtype_argument(model_dir: Path) -> None:
    adapter = MetaLlamaMTPAdapter.from_pretrained(model_dir, dtype=torch.bfloat16)
    assert {p.dtype for p in adapter.model.parameters()} == {torch.bfloat16}


def test_adapter_yaml_disagreeing_with_params_is_reported(model_dir: Path) -> None:
    layout = ModelLayout(model_dir)
    layout.adapter_yaml.write_text(layout.adapter_yaml.read_text().replace("rope_theta: 10000.0", "rope_theta: 500000.0"))
    with pytest.raises(ChecksumMismatch):
        MetaLlamaMTPAdapter.from_pretrained(model_dir)
    with pytest.raises(ConfigMismatch, match=r"rope_theta: meta_adapter.yaml=500000.0 params.json=10000.0"):
        MetaLlamaMTPAdapter.from_pretrained(model_dir, verify=False)


def test_unknown_field_in_adapter_yaml_is_reported(model_dir: Path) -> None:
    layout = ModelLayout(model_dir)
    layout.adapter_yaml.write_text(layout.adapter_yaml.read_text() + "surprise: 1\n")
    with pytest.raises(ConfigMismatch, match="field surprise"):
        MetaLlamaMTPAdapter.from_pretrained(model_dir, verify=False)


def test_params_json_that_breaks_the_weights_is_reported(model_dir: Path) -> None:
    layout = ModelLayout(model_dir)
    params = json.loads(layout.params_json.read_text())
    layout.params_json.write_text(json.dumps({**params, "dim": 32, "n_heads": 2, "n_kv_heads": 1}))
    with pytest.raises(ConfigMismatch, match="dim: meta_adapter.yaml=64 params.json=32"):
        MetaLlamaMTPAdapter.from_pretrained(model_dir, verify=False)


def test_save_pretrained_round_trip_and_lineage(model_dir: Path, tmp_path: Path) -> None:
    adapter = MetaLlamaMTPAdapter.from_pretrained(model_dir)
    with torch.no_grad():
        adapter.model.norm.weight.add_(0.5)  # "trained"
    out = adapter.save_pretrained(tmp_path / "trained", extra_metadata={"run": "unit"})
    verify_model_dir(out)
    again = MetaLlamaMTPAdapter.from_pretrained(out)
    tokens = _tokens(400)
    with torch.no_grad():
        assert torch.equal(again.forward(tokens), adapter.forward(tokens))
    meta = again.metadata
    assert meta["kind"] == "trained" and meta["dtype"] == "float32" and meta["synthetic"] is True
    assert meta["extra"] == {"run": "unit"}
    base_sha = ModelLayout(model_dir).read_metadata()["files"]["safetensors/model.safetensors"]["sha256"]
    assert meta["derived_from"]["weights_sha256"] == {"safetensors/model.safetensors": base_sha}
    half = adapter.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert ModelLayout(half).read_metadata()["dtype"] == "float16"
    assert ModelLayout(half).weights_file.stat().st_size < ModelLayout(out).weights_file.stat().st_size


def test_one_training_step_changes_weights_and_lowers_loss(model_dir: Path) -> None:
    adapter = MetaLlamaMTPAdapter.from_pretrained(model_dir)
    adapter.model.train()
    tokens = _tokens(400)
    targets = torch.roll(tokens, -1, dims=1).unsqueeze(-1).expand(-1, -1, 4)
    losses = []
    for _ in range(3):
        logits = adapter.forward(tokens)  # (B, S, F, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten())
        adapter.model.zero_grad()
        loss.backward()
        with torch.no_grad():  # plain SGD (torch.optim would import torch._dynamo: seconds per process)
            for param in adapter.model.parameters():
                param -= 0.5 * param.grad
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
