"""configs/meta_adapter.yaml: the dims the adapter relies on, checked against params.json on every load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from vendor.meta_llama.model import ModelArgs
from wmtp_core.artifacts.errors import ConfigMismatch
from wmtp_core.io import field_error

DTYPES = ("float16", "bfloat16", "float32")


class MetaAdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    n_future_tokens: int
    intermediate_size: int
    rope_theta: float
    norm_eps: float
    max_seq_len: int
    dtype: str

    @classmethod
    def from_args(cls, args: ModelArgs, dtype: str) -> MetaAdapterConfig:
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} not one of {DTYPES}")
        return cls(dim=args.dim, n_layers=args.n_layers, n_heads=args.n_heads, n_kv_heads=args.kv_heads,
                   vocab_size=args.vocab_size, n_future_tokens=args.n_future_tokens,
                   intermediate_size=args.ffn_hidden_dim, rope_theta=args.rope_theta, norm_eps=args.norm_eps,
                   max_seq_len=args.max_seq_len, dtype=dtype)

    def check_against(self, args: ModelArgs, where: str) -> None:
        """Raise ConfigMismatch listing every field where the yaml disagrees with params.json."""
        expected = MetaAdapterConfig.from_args(args, self.dtype)
        diffs = [f"{name}: meta_adapter.yaml={getattr(self, name)!r} params.json={getattr(expected, name)!r}"
                 for name in type(self).model_fields if getattr(self, name) != getattr(expected, name)]
        if diffs:
            raise ConfigMismatch(f"{where}: meta_adapter.yaml disagrees with params.json: " + "; ".join(diffs))


def adapter_yaml_text(cfg: MetaAdapterConfig) -> str:
    """YAML text for `cfg` (the caller writes it atomically)."""
    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)


def read_adapter_yaml(path: Path) -> MetaAdapterConfig:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigMismatch(f"{path}: missing") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigMismatch(f"{path}{line}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigMismatch(f"{path}: expected a mapping at top level")
    try:
        cfg = MetaAdapterConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigMismatch(f"{path}: {field_error(exc)}") from exc
    if cfg.dtype not in DTYPES:
        raise ConfigMismatch(f"{path}: field dtype: {cfg.dtype!r} not one of {DTYPES}")
    return cfg


def hf_style_config(args: ModelArgs, dtype: str) -> dict[str, Any]:
    """A Hugging Face LLaMA-like summary of the dims (informational; params.json is authoritative)."""
    return {
        "architectures": ["MetaLlamaMTP"],
        "model_type": "llama-mtp",
        "hidden_size": args.dim,
        "intermediate_size": args.ffn_hidden_dim,
        "num_hidden_layers": args.n_layers,
        "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.kv_heads,
        "head_dim": args.head_dim,
        "vocab_size": args.vocab_size,
        "rms_norm_eps": args.norm_eps,
        "rope_theta": args.rope_theta,
        "max_position_embeddings": args.max_seq_len,
        "n_future_tokens": args.n_future_tokens,
        "torch_dtype": dtype,
        "tie_word_embeddings": False,
    }
