"""Write a .safetensors file one tensor at a time (the header is known up front from names, dtypes, shapes).

safetensors.torch.save_file needs every tensor in memory at once; this writer needs only the tensor being
written, which keeps a converter's peak memory near its largest tensor. Format: 8-byte little-endian header
length, JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}} padded with spaces to a multiple
of 8, then the tensors' bytes back to back in header order.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

DTYPE_CODES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}


def _header(entries: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype,
            metadata: dict[str, str]) -> tuple[bytes, list[int]]:
    header: dict[str, object] = {"__metadata__": metadata}
    offset, sizes = 0, []
    for name, shape in entries:
        nbytes = dtype.itemsize
        for dim in shape:
            nbytes *= dim
        header[name] = {"dtype": DTYPE_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        sizes.append(nbytes)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw, sizes


def write_streaming(path: Path, entries: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype,
                    load: Callable[[str], torch.Tensor], metadata: dict[str, str] | None = None) -> int:
    """Write tensors `entries` (name, shape) of `dtype`, fetching each with load(name); return bytes of data."""
    if sys.byteorder != "little":
        raise RuntimeError("safetensors stores little-endian data; big-endian hosts are not supported")
    if dtype not in DTYPE_CODES:
        raise ValueError(f"dtype {dtype} not supported (float16, bfloat16, float32)")
    head, sizes = _header(entries, dtype, metadata or {"format": "pt"})
    with open(path, "wb") as handle:
        handle.write(head)
        for (name, shape), nbytes in zip(entries, sizes):
            tensor = load(name)
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise RuntimeError(f"{path}: tensor {name} is {tuple(tensor.shape)} {tensor.dtype}, "
                                   f"expected {tuple(shape)} {dtype}")
            data = tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy()  # (nbytes,) no copy
            if data.nbytes != nbytes:
                raise RuntimeError(f"{path}: tensor {name} has {data.nbytes} bytes, expected {nbytes}")
            handle.write(memoryview(data))
            del tensor, data
    return sum(sizes)
