"""The streaming safetensors writer produces files the safetensors library reads back exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from wmtp_core.artifacts.safetensors_stream import write_streaming


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_round_trip_through_safetensors(tmp_path: Path, dtype: torch.dtype) -> None:
    tensors = {"a.weight": torch.randn(3, 5), "b": torch.randn(7), "c.weight": torch.randn(2, 3, 1)}
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    entries = [(k, tuple(v.shape)) for k, v in tensors.items()]
    n = write_streaming(tmp_path / "x.safetensors", entries, dtype, tensors.__getitem__, {"format": "pt", "k": "v"})
    assert n == sum(v.numel() * dtype.itemsize for v in tensors.values())
    back = load_file(str(tmp_path / "x.safetensors"))
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "k": "v"}
    header_len = int.from_bytes((tmp_path / "x.safetensors").read_bytes()[:8], "little")
    assert header_len % 8 == 0


def test_shape_or_dtype_surprise_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"tensor a is \(4,\) torch.float16, expected \(3,\)"):
        write_streaming(tmp_path / "x.safetensors", [("a", (3,))], torch.float16,
                        lambda _: torch.zeros(4, dtype=torch.float16))
