"""Hugging Face LLaMA-format model (Rho-1 reference, optional reward model) -> the project's model layout.

Input: config.json, weights as sharded `pytorch_model-*.bin` or `model-*.safetensors` (+ index JSON) or a single
file, and a SentencePiece tokenizer.model. Output: a single-head (n_future_tokens 1) model in Meta key layout.
HF stores q/k rows per head as [first halves | second halves] of the rotary pairs; Meta interleaves the pairs,
so those rows are permuted back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from vendor.meta_llama.model import ModelArgs, expected_shapes
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.artifacts.checks import check_same_vocabulary, check_state_shapes, check_tokenizer_vocab
from wmtp_core.artifacts.convert import ConvertResult, existing_conversion, hash_sources
from wmtp_core.artifacts.dims import with_ffn_hidden
from wmtp_core.artifacts.errors import ArtifactError, ConfigMismatch, StateDictMismatch
from wmtp_core.artifacts.layout import ModelLayout, SourceInfo
from wmtp_core.artifacts.writer import (
    DEFAULT_MAX_SHARD_BYTES,
    ModelDirSpec,
    iter_keys_sizes,
    plan_shards,
    torch_dtype,
    write_model_dir,
)

BLOCK_NAMES = {
    "self_attn.q_proj.weight": "attention.wq.weight", "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight", "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight", "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight", "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
TOP_NAMES = {"model.embed_tokens.weight": "tok_embeddings.weight", "model.norm.weight": "norm.weight",
             "lm_head.weight": "output.weight"}
IGNORED = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")
LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")


def hf_to_meta_name(name: str) -> str | None:
    """Our key for an HF LLaMA key; None for keys that are recomputed (rotary inv_freq); raises if unknown."""
    if IGNORED.match(name):
        return None
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    match = LAYER.match(name)
    if match and match.group(2) in BLOCK_NAMES:
        return f"layers.{match.group(1)}.{BLOCK_NAMES[match.group(2)]}"
    raise StateDictMismatch(f"unexpected HF tensor {name!r} (not part of a LlamaForCausalLM)")


def unpermute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(H*Dh, D) HF half-split rotary rows -> Meta interleaved pairs (inverse of HF's conversion permute)."""
    rows, cols = weight.shape
    head_dim = rows // n_heads
    return weight.view(n_heads, 2, head_dim // 2, cols).transpose(1, 2).reshape(rows, cols)


def read_hf_config(source: Path) -> tuple[ModelArgs, dict[str, Any]]:
    path = source / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: missing (a Hugging Face model dir has config.json)") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    problems = _unsupported(cfg)
    if problems:
        raise ConfigMismatch(f"{path}: unsupported LLaMA variant: " + "; ".join(problems))
    try:
        args = ModelArgs(dim=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"], n_heads=cfg["num_attention_heads"],
                         n_kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
                         vocab_size=cfg["vocab_size"], norm_eps=cfg.get("rms_norm_eps", 1e-6),
                         rope_theta=float(cfg.get("rope_theta", _rope_theta(cfg))), n_future_tokens=1,
                         max_seq_len=cfg.get("max_position_embeddings", 2048))
        args = with_ffn_hidden(args, cfg["intermediate_size"])
    except KeyError as exc:
        raise ConfigMismatch(f"{path}: field {exc.args[0]}: missing") from exc
    except ValueError as exc:
        raise ConfigMismatch(f"{path}: {exc}") from exc
    return args, cfg


def _rope_theta(cfg: dict[str, Any]) -> float:
    params = cfg.get("rope_parameters") or {}
    return float(params.get("rope_theta", 10000.0))


def _unsupported(cfg: dict[str, Any]) -> list[str]:
    problems = []
    if cfg.get("model_type", "llama") != "llama":
        problems.append(f"model_type {cfg.get('model_type')!r} (expected 'llama')")
    if cfg.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {cfg.get('hidden_act')!r} (expected 'silu')")
    rope = cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if rope else "default"
    params = cfg.get("rope_parameters") or {}
    rope_type = params.get("rope_type", rope_type)
    if rope_type != "default":
        problems.append(f"rope scaling {rope_type!r} (only plain RoPE is supported)")
    for flag in ("attention_bias", "mlp_bias"):
        if cfg.get(flag):
            problems.append(f"{flag} true (LLaMA has no biases)")
    hd = cfg.get("head_dim")
    if hd is not None and hd * cfg.get("num_attention_heads", 0) != cfg.get("hidden_size"):
        problems.append(f"head_dim {hd} != hidden_size / num_attention_heads")
    return problems


def weight_locations(source: Path) -> dict[str, Path]:
    """HF tensor name -> file holding it (from the index, or the single weights file)."""
    for name in INDEX_NAMES:
        index = source / name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise ArtifactError(f"{index}: not a weights index (needs 'weight_map'): {exc}") from exc
            missing = sorted({f for f in weight_map.values() if not (source / f).is_file()})
            if missing:
                raise ArtifactError(f"{index}: lists shard files that do not exist: {missing}")
            return {k: source / f for k, f in weight_map.items()}
    for name in SINGLE_NAMES:
        if (source / name).is_file():
            return dict.fromkeys(_file_shapes(source / name), source / name)
    raise ArtifactError(f"{source}: no weights found (expected {INDEX_NAMES} or {SINGLE_NAMES})")


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    state = _load_bin(path)
    return {k: tuple(v.shape) for k, v in state.items()}


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ArtifactError(f"{path}: cannot be read as a torch checkpoint: {exc}") from exc


def _read_tensors(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            return {n: handle.get_tensor(n) for n in names}
    state = _load_bin(path)
    return {n: state[n] for n in names}


def mapped_names(locations: dict[str, Path], args: ModelArgs, tie: bool) -> dict[str, str]:
    """Our key -> HF key, with every expected key present (tied output reuses the embeddings)."""
    ours: dict[str, str] = {}
    for hf_name in locations:
        meta = hf_to_meta_name(hf_name)
        if meta is not None:
            ours[meta] = hf_name
    if "output.weight" not in ours and tie:
        ours["output.weight"] = "model.embed_tokens.weight"
    return ours


def hf_loader(locations: dict[str, Path], names: dict[str, str], args: ModelArgs) -> Callable[[str], torch.Tensor]:
    """Read one tensor at a time from its source file (memory-mapped) and un-permute q/k."""
    def load(key: str) -> torch.Tensor:
        hf_name = names[key]
        raw = _read_tensors(locations[hf_name], [hf_name])[hf_name]
        return _convert_tensor(key, raw, args)  # the writer casts to `dtype`
    return load


def _convert_tensor(key: str, tensor: torch.Tensor, args: ModelArgs) -> torch.Tensor:
    if key.endswith("attention.wq.weight"):
        return unpermute_rotary(tensor, args.n_heads)
    if key.endswith("attention.wk.weight"):
        return unpermute_rotary(tensor, args.kv_heads)
    return tensor


def shared_tokenizer_name(tokenizer: Tokenizer, shared_with: Path | None) -> str | None:
    """Name of the base model whose vocabulary is identical (checked); None when no base is given."""
    if shared_with is None:
        return None
    base_tok = Tokenizer(ModelLayout(shared_with).tokenizer_model)
    check_same_vocabulary(tokenizer, base_tok)
    return shared_with.name


def convert_hf_llama(source_dir: str | Path, out_dir: str | Path, kind: str = "reference",
                     shared_with: str | Path | None = None, force: bool = False, dtype: str = "float16",
                     max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> ConvertResult:
    """Convert an HF LlamaForCausalLM dir. kind "reward" records status "optional"."""
    if kind not in ("reference", "reward"):
        raise ValueError(f"kind must be 'reference' or 'reward', got {kind!r}")
    source, out = Path(source_dir), Path(out_dir)
    args, hf_cfg = read_hf_config(source)
    tok_path = source / "tokenizer.model"
    tokenizer = Tokenizer(tok_path)
    check_tokenizer_vocab(tokenizer, args, str(source / "config.json"))
    shared = shared_tokenizer_name(tokenizer, Path(shared_with) if shared_with else None)
    locations = weight_locations(source)
    names = mapped_names(locations, args, bool(hf_cfg.get("tie_word_embeddings", False)))
    shapes = _shapes(locations, names)
    check_state_shapes(shapes, args, str(source))
    status = "optional" if kind == "reward" else "required"
    src_files = sorted(set(locations.values())) + [source / "config.json", tok_path]
    source_files = hash_sources(src_files)
    settings = {"dtype": dtype, "max_shard_bytes": max_shard_bytes, "kind": kind, "status": status,
                "tokenizer_shared_with": shared}
    message = existing_conversion(out, source_files, settings, force)
    if message is not None:
        meta = ModelLayout(out).read_metadata()
        return ConvertResult(out, True, message, meta, [], ModelLayout(out).weight_files())
    target = torch_dtype(dtype)
    ignored = sorted(k for k in locations if hf_to_meta_name(k) is None)
    spec = ModelDirSpec(
        args=args, dtype=dtype, tokenizer_model=tok_path, kind=kind, synthetic=False,
        source=SourceInfo(description=f"Hugging Face LLaMA checkpoint {source.name} ({kind})",
                          path=str(source.resolve()), files=source_files).model_dump(),
        config_json=hf_cfg,
        tokenizer_extra_files=[source / n for n in TOKENIZER_EXTRAS if (source / n).is_file()],
        metadata_fields={"status": status, "tokenizer_shared_with": shared, "tolerated_keys": ignored,
                         "conversion": {"settings": settings, "tool": "wmtp_core.artifacts.convert_reference",
                                        "rotary_permutation": "HF half-split -> Meta interleaved (q, k)"}},
    )
    sizes = list(iter_keys_sizes(expected_shapes(args), target.itemsize))
    meta = write_model_dir(out, spec, plan_shards(sizes, max_shard_bytes), hf_loader(locations, names, args))
    note = f"; tokenizer identical to {shared}'s" if shared else "; tokenizer not compared (no base given)"
    msg = f"{out}: converted HF LLaMA {source} ({kind}) -> {meta.parameter_count} parameters, {dtype}{note}"
    return ConvertResult(out, False, msg, meta.model_dump(), ignored, ModelLayout(out).weight_files())


def _shapes(locations: dict[str, Path], names: dict[str, str]) -> dict[str, tuple[int, ...]]:
    """Our key -> shape, reading each source file's header (or pickle) once."""
    per_file: dict[Path, dict[str, tuple[int, ...]]] = {}
    for path in sorted(set(locations.values())):
        per_file[path] = _file_shapes(path)
    return {key: per_file[locations[hf]][hf] for key, hf in names.items()}
