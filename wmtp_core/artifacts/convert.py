"""Meta consolidated.pth -> fp16 safetensors model directory (the base MTP model, or any Meta-format model).

The checkpoint is opened with torch.load(weights_only=True, mmap=True). Shards are written one at a time and
the memory map is reopened per shard, so only one shard's source pages and converted tensors are resident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vendor.meta_llama.model import ModelArgs, expected_shapes
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.artifacts.checks import check_float_dtypes, check_state_shapes, check_tokenizer_vocab
from wmtp_core.artifacts.errors import ArtifactError, ArtifactExists
from wmtp_core.artifacts.layout import FileEntry, ModelLayout, SourceInfo
from wmtp_core.artifacts.synthetic import CHECKPOINT_NAME, PARAMS_NAME, TOKENIZER_NAME, is_synthetic_source
from wmtp_core.artifacts.verify import verify_model_dir
from wmtp_core.artifacts.writer import (
    DEFAULT_MAX_SHARD_BYTES,
    ModelDirSpec,
    TensorLoader,
    iter_keys_sizes,
    plan_shards,
    torch_dtype,
    write_model_dir,
)
from wmtp_core.io import read_json, sha256_file


@dataclass
class ConvertResult:
    out_dir: Path
    skipped: bool  # True when the output already held this exact conversion (no-op)
    message: str
    metadata: dict[str, Any]
    tolerated_keys: list[str] = field(default_factory=list)
    weight_files: list[Path] = field(default_factory=list)


def find_checkpoint(source: Path) -> Path:
    """consolidated.pth, or the single consolidated.00.pth of a one-rank Meta release."""
    candidates = [source / CHECKPOINT_NAME] + sorted(source.glob("consolidated.*.pth"))
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise ArtifactError(f"{source}: no {CHECKPOINT_NAME} (or consolidated.00.pth) found")
    if len(found) > 1:
        raise ArtifactError(f"{source}: several checkpoint files {[p.name for p in found]}; "
                            "model-parallel checkpoints must be merged first")
    return found[0]


def read_meta_params(source: Path) -> tuple[ModelArgs, dict[str, Any], Tokenizer]:
    """ModelArgs from params.json (vocab_size -1 means "from the tokenizer"), the extra fields, the tokenizer."""
    params_path, tok_path = source / PARAMS_NAME, source / TOKENIZER_NAME
    for path in (params_path, tok_path):
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (a Meta checkpoint dir holds consolidated.pth, params.json, "
                                "tokenizer.model)")
    params = read_json(params_path, ArtifactError, expect=dict)
    tokenizer = Tokenizer(tok_path)
    if params.get("vocab_size", -1) in (-1, None):
        params["vocab_size"] = tokenizer.n_words
    try:
        args, extra = ModelArgs.from_params(params)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{params_path}: {exc}") from exc
    check_tokenizer_vocab(tokenizer, args, str(params_path))
    return args, extra, tokenizer


def hash_sources(paths: list[Path]) -> dict[str, FileEntry]:
    return {p.name: FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size) for p in paths}


def existing_conversion(out: Path, source_files: dict[str, FileEntry], settings: dict[str, Any],
                        force: bool) -> str | None:
    """Message when out_dir already holds this exact conversion; raise when it holds something else."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    layout = ModelLayout(out)
    try:
        meta = layout.read_metadata_model()
    except ArtifactError as exc:
        if force:
            return None
        raise ArtifactExists(f"{out}: exists and is not a valid model directory ({exc}); use --force to replace "
                             "it") from exc
    same = meta.source.files == source_files and meta.conversion.get("settings") == settings
    if not same:
        if force:
            return None
        raise ArtifactExists(f"{out}: holds a different artifact (source {meta.source.path}, created "
                             f"{meta.created_at}); use --force to replace it")
    try:
        verify_model_dir(out, full=False)
    except ArtifactError as exc:
        if force:
            return None
        raise ArtifactExists(f"{out}: holds this conversion but fails verification ({exc}); use --force to "
                             "rebuild it") from exc
    return f"{out}: already converted from this source ({meta.created_at}); nothing to do"


MAP_REUSE_BYTES = 32 * 1024**2  # source bytes read through one memory map before it is reopened


def mmap_loader(checkpoint: Path, reuse_bytes: int = MAP_REUSE_BYTES) -> TensorLoader:
    """Memory-mapped source tensors; the map is reopened once `reuse_bytes` were read through it.

    Pages read through a map stay resident until the map is closed, so reopening bounds them (small
    tensors share a map, a large one gets its own). The writer casts each tensor chunk by chunk.
    """
    current: dict[str, Any] = {"state": None, "read": 0}

    def load(key: str) -> torch.Tensor:
        if current["state"] is None or current["read"] >= reuse_bytes:
            current["state"] = None  # release the previous map first
            current["state"] = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
            current["read"] = 0
        tensor = current["state"].pop(key)
        current["read"] += tensor.numel() * tensor.element_size()
        if not current["state"]:
            current["state"] = None
        return tensor
    return load


def inspect_checkpoint(checkpoint: Path, args: ModelArgs) -> tuple[list[str], list[str]]:
    """Check keys, shapes and dtypes without reading tensor data; return (tolerated keys, source dtypes)."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ArtifactError(f"{checkpoint}: cannot be read as a torch checkpoint: {exc}") from exc
    if not isinstance(state, dict):
        raise ArtifactError(f"{checkpoint}: expected a state dict, got {type(state).__name__}")
    tolerated = check_state_shapes({k: tuple(v.shape) for k, v in state.items()}, args, str(checkpoint))
    dtypes = sorted(check_float_dtypes(state, str(checkpoint)))
    del state
    return tolerated, dtypes


def convert_meta_checkpoint(source_dir: str | Path, out_dir: str | Path, force: bool = False,
                            max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, dtype: str = "float16",
                            kind: str = "base", status: str = "required",
                            description: str | None = None) -> ConvertResult:
    """Convert a Meta-format checkpoint dir into the project layout (see wmtp_core.artifacts.layout)."""
    source, out = Path(source_dir), Path(out_dir)
    checkpoint = find_checkpoint(source)
    args, params_extra, _ = read_meta_params(source)
    source_files = hash_sources([checkpoint, source / PARAMS_NAME, source / TOKENIZER_NAME])
    settings = {"dtype": dtype, "max_shard_bytes": max_shard_bytes, "kind": kind, "status": status}
    message = existing_conversion(out, source_files, settings, force)
    if message is not None:
        meta = ModelLayout(out).read_metadata()
        return ConvertResult(out, True, message, meta, meta["tolerated_keys"], ModelLayout(out).weight_files())
    tolerated, source_dtypes = inspect_checkpoint(checkpoint, args)
    target = torch_dtype(dtype)
    sizes = list(iter_keys_sizes(expected_shapes(args), target.itemsize))
    synthetic = is_synthetic_source(source)
    spec = ModelDirSpec(
        args=args, dtype=dtype, tokenizer_model=source / TOKENIZER_NAME, kind=kind, synthetic=synthetic,
        source=SourceInfo(description=description or _describe(source, synthetic), path=str(source.resolve()),
                          files=source_files).model_dump(),
        params_extra=params_extra,
        metadata_fields={"status": status, "tolerated_keys": tolerated,
                         "conversion": {"settings": settings, "source_dtypes": source_dtypes,
                                        "tool": "wmtp_core.artifacts.convert"}},
    )
    meta = write_model_dir(out, spec, plan_shards(sizes, max_shard_bytes), mmap_loader(checkpoint))
    note = f" (tolerated and dropped: {', '.join(tolerated)})" if tolerated else ""
    message = f"{out}: converted {checkpoint} -> {meta.parameter_count} parameters, {dtype}{note}"
    return ConvertResult(out, False, message, meta.model_dump(), tolerated, ModelLayout(out).weight_files())


def _describe(source: Path, synthetic: bool) -> str:
    if synthetic:
        return f"synthetic Meta-format checkpoint (random weights) from {source.name}"
    return f"Meta-format checkpoint {source.name}"
