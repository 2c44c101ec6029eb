"""The one place that knows a model directory's layout and its metadata.json fields.

    <root>/safetensors/model.safetensors            (or model-0000i-of-0000N.safetensors + model.safetensors.index.json)
    <root>/configs/params.json                      Meta params (extra fields allowed)
    <root>/configs/meta_adapter.yaml                dims the adapter checks against params.json
    <root>/configs/config.json                      HF-style summary (the reference keeps its original)
    <root>/tokenizer/tokenizer.model, tokenizer_config.json
    <root>/metadata.json                            format version, dtype, SHA256 of every file, source, ...
    <root>/.verify_cache.json                       size + mtime -> SHA256 cache for fast verification
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from wmtp_core.artifacts.errors import ArtifactError
from wmtp_core.io import field_error, read_json

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
METADATA_NAME = "metadata.json"
VERIFY_CACHE_NAME = ".verify_cache.json"
SYNTHETIC_MARKER = "SYNTHETIC.json"  # written next to a synthetic Meta-format source checkpoint

ArtifactKind = Literal["base", "reference", "reward", "micro", "trained"]


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    bytes: int


class SourceInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str
    path: str
    files: dict[str, FileEntry]  # source file name -> hash (the checkpoint itself included)


class ArtifactMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int
    kind: ArtifactKind
    status: Literal["required", "optional"] = "required"
    dtype: str
    synthetic: bool
    created_at: str
    parameter_count: int
    n_future_tokens: int
    files: dict[str, FileEntry]  # path relative to the model dir -> hash; metadata.json itself excluded
    source: SourceInfo
    conversion: dict[str, Any] = {}
    tolerated_keys: list[str] = []
    tokenizer_shared_with: str | None = None
    derived_from: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    target_device: str | None = None
    extra: dict[str, Any] = {}


@dataclass(frozen=True)
class ModelLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def safetensors_dir(self) -> Path:
        return self.root / "safetensors"

    @property
    def weights_file(self) -> Path:
        return self.safetensors_dir / WEIGHTS_NAME

    @property
    def index_file(self) -> Path:
        return self.safetensors_dir / INDEX_NAME

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def params_json(self) -> Path:
        return self.configs_dir / "params.json"

    @property
    def adapter_yaml(self) -> Path:
        return self.configs_dir / "meta_adapter.yaml"

    @property
    def config_json(self) -> Path:
        return self.configs_dir / "config.json"

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tokenizer_model(self) -> Path:
        return self.tokenizer_dir / "tokenizer.model"

    @property
    def tokenizer_config(self) -> Path:
        return self.tokenizer_dir / "tokenizer_config.json"

    @property
    def metadata_json(self) -> Path:
        return self.root / METADATA_NAME

    @property
    def verify_cache(self) -> Path:
        return self.root / VERIFY_CACHE_NAME

    def exists(self) -> bool:
        return self.metadata_json.is_file()

    def read_metadata(self) -> dict[str, Any]:
        """metadata.json as a validated dict (raises ArtifactError naming the file and field)."""
        return self.read_metadata_model().model_dump()

    def read_metadata_model(self) -> ArtifactMetadata:
        path = self.metadata_json
        raw = read_json(path, ArtifactError, missing=lambda p: ArtifactError(
            f"{p}: metadata.json missing; {self.root} is not a converted model directory"))
        try:
            meta = ArtifactMetadata.model_validate(raw)
        except ValidationError as exc:
            raise ArtifactError(f"{path}: {field_error(exc)}") from exc
        if meta.format_version != FORMAT_VERSION:
            raise ArtifactError(f"{path}: format_version {meta.format_version} unsupported (expected {FORMAT_VERSION})")
        return meta

    def weight_files(self) -> list[Path]:
        """Safetensors files holding the weights: the index's shards, or the single file."""
        if self.index_file.is_file():
            return [self.safetensors_dir / name for name in sorted(set(self.read_index().values()))]
        if self.weights_file.is_file():
            return [self.weights_file]
        raise ArtifactError(f"{self.safetensors_dir}: neither {WEIGHTS_NAME} nor {INDEX_NAME} found")

    def read_index(self) -> dict[str, str]:
        """Tensor name -> shard file name from model.safetensors.index.json."""
        try:
            index = json.loads(self.index_file.read_text(encoding="utf-8"))
            weight_map = index["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{self.index_file}: not a safetensors index (needs a 'weight_map'): {exc}") from exc
        if not isinstance(weight_map, dict):
            raise ArtifactError(f"{self.index_file}: field weight_map: expected an object")
        return weight_map

    def relative_files(self) -> list[str]:
        """Every file under root except metadata.json and the verify cache, as sorted posix paths."""
        skip = {METADATA_NAME, VERIFY_CACHE_NAME}
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and p.relative_to(self.root).as_posix() not in skip and not _is_cache_temp(p.name)
        )


def _is_cache_temp(name: str) -> bool:
    """A verify cache being written by a concurrent loader (atomic_output's `.<name>.<random>.tmp`)."""
    return name.startswith(f".{VERIFY_CACHE_NAME}.") and name.endswith(".tmp")
