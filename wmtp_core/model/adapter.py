"""MetaLlamaMTPAdapter: load / save the vendor Transformer from / to a model directory (artifacts layout)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from vendor.meta_llama.model import ModelArgs, Transformer, expected_shapes
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.artifacts.adapter_config import read_adapter_yaml
from wmtp_core.artifacts.checks import check_state_shapes, check_tokenizer_vocab
from wmtp_core.artifacts.errors import ArtifactError
from wmtp_core.artifacts.layout import ModelLayout, SourceInfo
from wmtp_core.artifacts.verify import verify_model_dir
from wmtp_core.artifacts.writer import (
    DEFAULT_MAX_SHARD_BYTES,
    ModelDirSpec,
    dtype_name,
    iter_keys_sizes,
    plan_shards,
    state_loader,
    write_model_dir,
)
from wmtp_core.io import read_json


def read_params(layout: ModelLayout) -> tuple[ModelArgs, dict[str, Any]]:
    path = layout.params_json
    params = read_json(path, ArtifactError, missing=lambda p: ArtifactError(f"{p}: missing"))
    try:
        return ModelArgs.from_params(params)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: {exc}") from exc


def load_weights(layout: ModelLayout) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in layout.weight_files():
        part = load_file(str(path))
        overlap = set(part) & set(state)
        if overlap:
            raise ArtifactError(f"{path}: tensors also present in another shard: {sorted(overlap)[:5]}")
        state.update(part)
    return state


@contextlib.contextmanager
def _skip_param_init() -> Iterator[None]:
    """Build modules on the meta device without running their random init.

    Random init on meta tensors would pull in torch's Python decompositions (tens of seconds of imports) and
    is wasted work: every parameter is replaced by a checkpoint tensor right after.
    """
    saved = nn.Linear.reset_parameters, nn.Embedding.reset_parameters
    nn.Linear.reset_parameters = nn.Embedding.reset_parameters = lambda self: None  # type: ignore[method-assign]
    try:
        with torch.device("meta"):
            yield
    finally:
        nn.Linear.reset_parameters, nn.Embedding.reset_parameters = saved  # type: ignore[method-assign]


def build_model(args: ModelArgs, state: dict[str, torch.Tensor], dtype: torch.dtype,
                device: torch.device | str) -> Transformer:
    """Construct without random init and adopt the checkpoint tensors (strict: every key, every shape)."""
    with _skip_param_init():
        model = Transformer(args)
    wanted = expected_shapes(args)  # drops tolerated extras such as rope.freqs
    clean = {k: v.to(device=device, dtype=dtype) for k, v in state.items() if k in wanted}
    model.load_state_dict(clean, strict=True, assign=True)
    return model


class MetaLlamaMTPAdapter:
    """The vendor Transformer plus everything that came with it from its model directory."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, metadata: dict[str, Any],
                 model_dir: Path | None, params_extra: dict[str, Any] | None = None) -> None:
        self.model = model
        self.args: ModelArgs = model.args
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.model_dir = model_dir
        self.params_extra = params_extra or {}

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None, verify: bool = True) -> MetaLlamaMTPAdapter:
        """Load a model dir. verify: every file re-hashed against metadata.json (full: an unchanged size + mtime
        does not rule out bit rot, so the fast cache is not trusted for loading). dtype None -> float32."""
        layout = ModelLayout(Path(model_dir))
        if verify:
            verify_model_dir(layout.root, full=True)
        metadata = layout.read_metadata()
        args, extra = read_params(layout)
        read_adapter_yaml(layout.adapter_yaml).check_against(args, str(layout.configs_dir))
        tokenizer = Tokenizer(layout.tokenizer_model)
        check_tokenizer_vocab(tokenizer, args, str(layout.params_json))
        state = load_weights(layout)
        check_state_shapes({k: tuple(v.shape) for k, v in state.items()}, args, str(layout.safetensors_dir))
        model = build_model(args, state, dtype or torch.float32, device or "cpu")
        return cls(model, tokenizer, metadata, layout.root, extra)

    @property
    def device(self) -> torch.device:
        return self.model.tok_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.tok_embeddings.weight.dtype

    def trunk_forward(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.model.trunk_forward(tokens, **kwargs)

    def head_hidden(self, trunk: torch.Tensor, k: int, **kwargs: Any) -> torch.Tensor:
        return self.model.head_hidden(trunk, k, **kwargs)

    def normed_trunk(self, trunk: torch.Tensor) -> torch.Tensor:
        return self.model.normed_trunk(trunk)

    def head_logits(self, trunk: torch.Tensor, k: int, **kwargs: Any) -> torch.Tensor:
        return self.model.head_logits(trunk, k, **kwargs)

    def forward(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """tokens (B, S) -> logits (B, S, F, V)."""
        return self.model(tokens, **kwargs)

    __call__ = forward

    def save_pretrained(self, out_dir: str | Path, extra_metadata: dict[str, Any] | None = None,
                        dtype: torch.dtype | None = None,
                        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
        """Write the same layout (kind "trained"); dtype None keeps the model's dtype. Replaces out_dir atomically."""
        target = dtype or self.dtype
        state = self.model.state_dict()
        sizes = list(iter_keys_sizes(expected_shapes(self.args), target.itemsize))
        spec = ModelDirSpec(
            args=self.args, dtype=dtype_name(target), tokenizer_model=self.tokenizer.model_path, kind="trained",
            synthetic=bool(self.metadata.get("synthetic", False)),
            source=SourceInfo(description=f"saved by MetaLlamaMTPAdapter from {self.model_dir}",
                              path=str(self.model_dir), files={}).model_dump(),
            params_extra=self.params_extra,
            metadata_fields={"derived_from": self._lineage(), "extra": dict(extra_metadata or {})},
        )
        write_model_dir(Path(out_dir), spec, plan_shards(sizes, max_shard_bytes), state_loader(state))
        return Path(out_dir)

    def _lineage(self) -> dict[str, Any]:
        files = self.metadata.get("files", {})
        return {"model_dir": str(self.model_dir), "kind": self.metadata.get("kind"),
                "weights_sha256": {k: v["sha256"] for k, v in files.items() if k.startswith("safetensors/")},
                "args": asdict(self.args)}
