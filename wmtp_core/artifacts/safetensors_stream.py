"""Write a .safetensors file one tensor at a time (the header is known up front from names, dtypes, shapes).

safetensors.torch.save_file needs every tensor in memory at once; this writer needs only the tensor being
written, which keeps a converter's peak memory near its largest tensor. Format: 8-byte little-endian header
length, JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}} padded with spaces to a multiple
of 8, then the tensors' bytes back to back in header order.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from wmtp_core.artifacts.errors import ArtifactError

CHUNK_ELEMENTS = 8 * 1024**2  # elements cast at a time: bounds the temporary copies to tens of MB
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
    """Write tensors `entries` (name, shape) as `dtype`, fetching each with load(name); return bytes of data.

    load may return any floating dtype (e.g. a memory-mapped bf16 source tensor); it is cast chunk by chunk,
    so no full-size converted copy is ever held. A value the target dtype cannot hold is an error, not inf.
    """
    if sys.byteorder != "little":
        raise RuntimeError("safetensors stores little-endian data; big-endian hosts are not supported")
    if dtype not in DTYPE_CODES:
        raise ValueError(f"dtype {dtype} not supported (float16, bfloat16, float32)")
    head, sizes = _header(entries, dtype, metadata or {"format": "pt"})
    with open(path, "wb") as handle:
        handle.write(head)
        for (name, shape), nbytes in zip(entries, sizes):
            tensor = load(name)
            if tuple(tensor.shape) != tuple(shape) or not tensor.dtype.is_floating_point:
                raise RuntimeError(f"{path}: tensor {name} is {tuple(tensor.shape)} {tensor.dtype}, "
                                   f"expected {tuple(shape)} floating point")
            written = sum(handle.write(memoryview(chunk)) for chunk in _chunks(name, tensor, dtype))
            if written != nbytes:
                raise RuntimeError(f"{path}: tensor {name} gave {written} bytes, expected {nbytes}")
            del tensor
    return sum(sizes)


def _chunks(name: str, tensor: torch.Tensor, dtype: torch.dtype) -> Iterator[np.ndarray]:
    """Bytes of `tensor` cast to `dtype`, CHUNK_ELEMENTS at a time along dim 0 (uint8 numpy views)."""
    source = tensor.detach().to("cpu")
    rows = max(1, CHUNK_ELEMENTS // max(1, source[0].numel())) if source.dim() > 1 else len(source)
    for start in range(0, max(len(source), 1), rows):
        part = source[start:start + rows]
        cast = part.to(dtype).contiguous()
        if dtype != part.dtype and not bool(torch.isfinite(cast).all()) and bool(torch.isfinite(part).all()):
            raise ArtifactError(f"tensor {name} overflows {dtype} (values beyond its range)")
        yield cast.view(torch.uint8).numpy()  # (bytes,) no copy
