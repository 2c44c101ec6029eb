"""Write a model directory (weights shards, configs, tokenizer, metadata) into a staging dir, then install it.

Weights are written one shard at a time through a `load(keys) -> {key: tensor}` callback, so a converter can
stream from a memory-mapped source and hold only one shard's tensors at once.
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from vendor.meta_llama.model import ModelArgs, expected_shapes
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.artifacts.adapter_config import MetaAdapterConfig, adapter_yaml_text, hf_style_config
from wmtp_core.artifacts.layout import (
    FORMAT_VERSION,
    INDEX_NAME,
    WEIGHTS_NAME,
    ArtifactMetadata,
    ModelLayout,
)
from wmtp_core.artifacts.safetensors_stream import write_streaming
from wmtp_core.artifacts.verify import file_entries, write_cache
from wmtp_core.io import atomic_output, atomic_write_json, atomic_write_text, default_mode, sha256_file

DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

TensorLoader = Callable[[str], torch.Tensor]  # key -> tensor (any float dtype; cast while writing)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def torch_dtype(name: str) -> torch.dtype:
    if name not in TORCH_DTYPES:
        raise ValueError(f"dtype {name!r} not one of {sorted(TORCH_DTYPES)}")
    return TORCH_DTYPES[name]


def plan_shards(sizes: list[tuple[str, int]], max_shard_bytes: int) -> list[list[str]]:
    """Group keys (in order) into shards of at most max_shard_bytes (a single larger tensor gets its own)."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    shards: list[list[str]] = [[]]
    used = 0
    for key, nbytes in sizes:
        if shards[-1] and used + nbytes > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(key)
        used += nbytes
    return shards


def shard_file_names(n_shards: int) -> list[str]:
    if n_shards == 1:
        return [WEIGHTS_NAME]
    return [f"model-{i:05d}-of-{n_shards:05d}.safetensors" for i in range(1, n_shards + 1)]


def write_shards(safetensors_dir: Path, plan: list[list[str]], shapes: dict[str, tuple[int, ...]],
                 dtype: torch.dtype, load: TensorLoader) -> int:
    """Write each shard tensor by tensor (plus the index when sharded); return the parameter count written."""
    safetensors_dir.mkdir(parents=True, exist_ok=True)
    names = shard_file_names(len(plan))
    weight_map: dict[str, str] = {}
    total_bytes = 0
    for name, keys in zip(names, plan):
        path = safetensors_dir / name
        total_bytes += write_streaming(path, [(k, shapes[k]) for k in keys], dtype, load)
        default_mode(path)
        weight_map.update(dict.fromkeys(keys, name))
        gc.collect()
    if len(plan) > 1:
        atomic_write_json(safetensors_dir / INDEX_NAME,
                          {"metadata": {"total_size": total_bytes}, "weight_map": weight_map})
    return total_bytes // dtype.itemsize


def state_loader(state: dict[str, torch.Tensor]) -> TensorLoader:
    """Loader over an in-memory state dict (the writer casts to the output dtype)."""
    def load(key: str) -> torch.Tensor:
        return state[key].detach()
    return load


def write_configs(layout: ModelLayout, args: ModelArgs, dtype: str, params_extra: dict[str, Any] | None = None,
                  config_json: dict[str, Any] | None = None) -> None:
    params = {k: v for k, v in args.to_params().items() if v is not None}
    atomic_write_json(layout.params_json, {**params, **(params_extra or {})})
    atomic_write_text(layout.adapter_yaml, adapter_yaml_text(MetaAdapterConfig.from_args(args, dtype)))
    atomic_write_json(layout.config_json, config_json if config_json is not None else hf_style_config(args, dtype))


def write_tokenizer(layout: ModelLayout, tokenizer_model: Path, extra_files: list[Path] | None = None) -> Tokenizer:
    """Copy tokenizer.model (+ extra tokenizer files) and write tokenizer_config.json."""
    layout.tokenizer_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer_model, layout.tokenizer_model)
    for extra in extra_files or []:  # e.g. HF tokenizer files; a clashing name gets an "hf_" prefix
        clash = extra.name in (layout.tokenizer_model.name, layout.tokenizer_config.name)
        shutil.copyfile(extra, layout.tokenizer_dir / (f"hf_{extra.name}" if clash else extra.name))
    tok = Tokenizer(layout.tokenizer_model)
    atomic_write_json(layout.tokenizer_config, {
        "tokenizer_class": "SentencePiece", "model_file": layout.tokenizer_model.name,
        "vocab_size": tok.n_words, "bos_id": tok.bos_id, "eos_id": tok.eos_id, "pad_id": tok.pad_id,
        "unk_id": tok.sp.unk_id(), "sha256": sha256_file(layout.tokenizer_model),
    })
    return tok


@dataclass
class ModelDirSpec:
    """Everything except the weights needed to write a model directory."""

    args: ModelArgs
    dtype: str
    tokenizer_model: Path
    kind: str
    synthetic: bool
    source: dict[str, Any]
    params_extra: dict[str, Any] | None = None
    config_json: dict[str, Any] | None = None
    tokenizer_extra_files: list[Path] | None = None
    metadata_fields: dict[str, Any] | None = None  # status, conversion, plan, derived_from, ...


def now_utc() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def write_model_dir(out_dir: Path, spec: ModelDirSpec, plan: list[list[str]], load: TensorLoader) -> ArtifactMetadata:
    """Write the full layout into a temporary sibling of out_dir and swap it in; return the metadata."""
    with atomic_output(out_dir) as stage:
        layout = ModelLayout(stage)
        stage.mkdir()
        n_params = write_shards(layout.safetensors_dir, plan, expected_shapes(spec.args), torch_dtype(spec.dtype), load)
        write_configs(layout, spec.args, spec.dtype, spec.params_extra, spec.config_json)
        write_tokenizer(layout, spec.tokenizer_model, spec.tokenizer_extra_files)
        meta = _metadata(layout, spec, n_params)
        atomic_write_json(layout.metadata_json, meta.model_dump())
        write_cache(stage, meta.files)
    return meta


def _metadata(layout: ModelLayout, spec: ModelDirSpec, n_params: int) -> ArtifactMetadata:
    fields = dict(spec.metadata_fields or {})
    return ArtifactMetadata(
        format_version=FORMAT_VERSION, kind=spec.kind, dtype=spec.dtype, synthetic=spec.synthetic,
        created_at=now_utc(), parameter_count=n_params, n_future_tokens=spec.args.n_future_tokens,
        files=file_entries(layout.root), source=spec.source, **fields,
    )


def iter_keys_sizes(shapes: dict[str, tuple[int, ...]], element_size: int) -> Iterator[tuple[str, int]]:
    for key, shape in shapes.items():
        numel = 1
        for s in shape:
            numel *= s
        yield key, numel * element_size
