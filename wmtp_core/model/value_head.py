"""Scalar value head on the FINAL-NORMED trunk hidden states (model.normed_trunk(trunk)), computed in fp32.

Saved as its own safetensors file; the constructor config travels in the file's metadata so `load` needs
nothing else.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

METADATA_KEY = "wmtp_value_head"
FORMAT_VERSION = 1


class ValueHead(nn.Module):
    """Linear (hidden=None) or Linear-GELU-Linear MLP mapping (B, S, D) normed states to values (B, S)."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        if dim <= 0 or (hidden is not None and hidden <= 0):
            raise ValueError(f"ValueHead needs positive sizes, got dim={dim}, hidden={hidden}")
        self.dim, self.hidden = dim, hidden
        if hidden is None:
            self.net = nn.Sequential(nn.Linear(dim, 1))
        else:
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.net[-1].weight)  # start at V = 0 so the first TD errors are the rewards
        nn.init.zeros_(self.net[-1].bias)
        self.float()

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "hidden": self.hidden, "format_version": FORMAT_VERSION}

    def forward(self, normed_hidden: Tensor) -> Tensor:
        """normed_hidden (B, S, D) any dtype -> values (B, S) fp32."""
        return self.net(normed_hidden.float()).squeeze(-1)

    def save(self, path: str | Path) -> Path:
        """Atomically write the weights (fp32) with the config in the safetensors metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.state_dict().items()}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(self.config())})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> ValueHead:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: value head file not found")
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        config = _parse_config(path, meta)
        head = cls(config["dim"], config["hidden"])
        try:
            head.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path}: tensors do not match the value head config {config}: {exc}") from exc
        return head.to(device) if device is not None else head


def _parse_config(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    if METADATA_KEY not in meta:
        raise ValueError(f"{path}: metadata field '{METADATA_KEY}' missing (not a WMTP value head file)")
    try:
        config = json.loads(meta[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: metadata field '{METADATA_KEY}' is not JSON: {exc.msg}") from exc
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: metadata '{METADATA_KEY}.format_version' is "
                         f"{config.get('format_version')!r}, expected {FORMAT_VERSION}")
    for key in ("dim", "hidden"):
        if key not in config:
            raise ValueError(f"{path}: metadata field '{METADATA_KEY}.{key}' missing")
    return config
