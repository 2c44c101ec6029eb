"""Distributed-checkpoint format in a single process: round trip, atomic layout, corruption and mismatch errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from wmtp_core.distributed_checkpoint import (
    MANIFEST_FILE,
    STATE_FILE,
    export_full_safetensors,
    is_distributed_checkpoint,
    load_distributed_checkpoint,
    save_distributed_checkpoint,
)


def _trained(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 4)).square().sum().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_weights_optimizer_and_state(tmp_path):
    model, optimizer = _trained(0)
    target = save_distributed_checkpoint(tmp_path / "ckpt", {"policy": model}, optimizer, {"step": 7},
                                         manifest_extra={"stage": "stage2", "step": 7})
    assert is_distributed_checkpoint(target)
    assert not list(tmp_path.glob(".*partial"))
    other, other_opt = _trained(1)
    state = load_distributed_checkpoint(target, {"policy": other}, other_opt)
    assert state == {"step": 7}
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(optimizer.state[p]["exp_avg_sq"], other_opt.state[q]["exp_avg_sq"])
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    assert manifest["world_size"] == 1 and manifest["modules"] == ["policy"]
    assert (manifest["stage"], manifest["step"]) == ("stage2", 7)
    assert STATE_FILE in manifest["files"] and "dcp/.metadata" in manifest["files"]
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())


def test_weights_only_load_and_overwrite(tmp_path):
    first, opt = _trained(0)
    save_distributed_checkpoint(tmp_path / "ckpt", {"policy": first}, opt, {"step": 1})
    second, opt2 = _trained(2)
    save_distributed_checkpoint(tmp_path / "ckpt", {"policy": second}, opt2, {"step": 2})
    fresh, _ = _trained(3)
    assert load_distributed_checkpoint(tmp_path / "ckpt", {"policy": fresh}) == {"step": 2}
    assert torch.equal(fresh[0].weight, second[0].weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_tampered_state_file_is_rejected(tmp_path):
    model, opt = _trained(0)
    target = save_distributed_checkpoint(tmp_path / "ckpt", {"policy": model}, opt, {"step": 1})
    torch.save({"step": 999}, target / STATE_FILE)
    with pytest.raises(ValueError, match="state.pt: SHA256 .* does not match checkpoint.json"):
        load_distributed_checkpoint(target, {"policy": model}, opt)


def test_unknown_module_and_missing_optimizer_are_named(tmp_path):
    model, _ = _trained(0)
    target = save_distributed_checkpoint(tmp_path / "ckpt", {"policy": model})
    with pytest.raises(ValueError, match=r"field modules: .*\['value_head'\]"):
        load_distributed_checkpoint(target, {"value_head": model})
    with pytest.raises(ValueError, match="field has_optimizer"):
        load_distributed_checkpoint(target, {"policy": model}, torch.optim.SGD(model.parameters(), lr=0.1))


def test_incomplete_directory_is_not_a_checkpoint(tmp_path):
    (tmp_path / "half").mkdir()
    assert not is_distributed_checkpoint(tmp_path / "half")
    with pytest.raises(FileNotFoundError, match="checkpoint.json: missing"):
        load_distributed_checkpoint(tmp_path / "half", {})


def test_export_writes_the_full_state_as_safetensors(tmp_path):
    model, _ = _trained(0)
    path = export_full_safetensors(model, tmp_path / "model.safetensors", dtype=torch.float16)
    tensors = load_file(str(path))
    assert set(tensors) == set(model.state_dict())
    assert tensors["0.weight"].dtype == torch.float16
    assert torch.allclose(tensors["0.weight"].float(), model[0].weight, atol=1e-3)
