"""ValueHead: fp32 output on normed states, safetensors round trip with config metadata, clear load errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from wmtp_core.model.value_head import ValueHead


@pytest.mark.parametrize("hidden", [None, 16])
def test_forward_shape_dtype_and_round_trip(tmp_path, hidden) -> None:
    torch.manual_seed(0)
    head = ValueHead(32, hidden)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    x = torch.randn(2, 5, 32).to(torch.bfloat16)
    out = head(x)
    assert out.shape == (2, 5) and out.dtype == torch.float32
    path = head.save(tmp_path / "vh" / "value_head.safetensors")
    loaded = ValueHead.load(path)
    assert loaded.config() == head.config() and loaded.hidden == hidden
    assert torch.equal(loaded(x), out)
    assert not list((tmp_path / "vh").glob(".*tmp"))  # atomic write leaves no temp file


def test_initial_values_are_zero() -> None:
    assert torch.equal(ValueHead(8, 4)(torch.randn(1, 3, 8)), torch.zeros(1, 3))


def test_load_errors_name_the_file_and_field(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        ValueHead.load(tmp_path / "missing.safetensors")
    bare = tmp_path / "bare.safetensors"
    save_file({"net.0.weight": torch.zeros(1, 4), "net.0.bias": torch.zeros(1)}, str(bare))
    with pytest.raises(ValueError, match="bare.safetensors: metadata field 'wmtp_value_head' missing"):
        ValueHead.load(bare)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"net.0.weight": torch.zeros(1, 4), "net.0.bias": torch.zeros(1)}, str(wrong),
              metadata={"wmtp_value_head": '{"dim": 8, "hidden": null, "format_version": 1}'})
    with pytest.raises(ValueError, match="wrong.safetensors: tensors do not match"):
        ValueHead.load(wrong)
    with pytest.raises(ValueError, match="positive"):
        ValueHead(0)
