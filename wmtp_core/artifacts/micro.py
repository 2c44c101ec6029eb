"""Slice a converted base MTP model into the small "micro" model that `--use-micro-model` trains.

Kept: n_future head blocks, a subset of the trunk blocks, the first `dim` residual channels, the first query /
kv heads (head_dim preserved, so RoPE pairs stay intact), the first FFN channels. The vocabulary becomes the given
tokenizer's: rows of pieces the base vocabulary also has are copied from the base embeddings / output, the rest
are drawn at random with the copied rows' scale. Tensors are read lazily from the base safetensors, so slicing a
13.5 GB base needs memory for the embeddings and one block at a time only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from safetensors import safe_open

from vendor.meta_llama.model import ModelArgs, expected_shapes
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core import paths
from wmtp_core.artifacts.dims import with_ffn_hidden
from wmtp_core.artifacts.errors import ArtifactError, ArtifactExists
from wmtp_core.artifacts.layout import ModelLayout, SourceInfo
from wmtp_core.artifacts.synthetic import write_synthetic_meta_checkpoint
from wmtp_core.artifacts.verify import verify_model_dir
from wmtp_core.artifacts.writer import (
    ModelDirSpec,
    iter_keys_sizes,
    state_loader,
    torch_dtype,
    write_model_dir,
)
from wmtp_core.io import sha256_file

BLOCK_KEYS = ("attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
              "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight",
              "attention_norm.weight", "ffn_norm.weight")


class MicroPlan(BaseModel):
    """How to slice the base; defaults are the design's micro model (dim 512, 4 heads, fp16, < 50 MB)."""

    model_config = ConfigDict(extra="forbid")
    dim: int = 512
    n_trunk_layers: int = 2
    trunk_layers: list[int] | None = None  # base trunk block ids; None = evenly spaced, first and last kept
    n_future_tokens: int = 4
    ffn_hidden_dim: int = 1024
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    target_device: Literal["cpu", "cuda", "mps", "auto"] = "auto"
    max_seq_len: int = 2048
    max_file_bytes: int = 50_000_000
    seed: int = 0

    @classmethod
    def tiny(cls, **overrides: Any) -> MicroPlan:
        """Test / smoke-flow size: dim 64 (head_dim of the base kept), FFN 128."""
        return cls(**{"dim": 64, "ffn_hidden_dim": 128, "max_seq_len": 512, **overrides})


PLANS = {"default": MicroPlan, "tiny": MicroPlan.tiny}


@dataclass
class BuildResult:
    out_dir: Path
    skipped: bool
    message: str
    metadata: dict[str, Any]
    weights_bytes: int = 0
    slicing: dict[str, Any] = field(default_factory=dict)


class BaseReader:
    """Lazy tensor access to a converted model dir (single file or shards)."""

    def __init__(self, layout: ModelLayout) -> None:
        files = layout.weight_files()
        self.where = dict.fromkeys(_keys(files[0]), files[0]) if len(files) == 1 else {
            k: layout.safetensors_dir / v for k, v in layout.read_index().items()}

    def get(self, key: str, rows: slice | None = None, cols: slice | None = None) -> torch.Tensor:
        if key not in self.where:
            raise ArtifactError(f"base weights lack tensor {key}")
        with safe_open(str(self.where[key]), framework="pt") as handle:
            part = handle.get_slice(key)
            if rows is None:
                return part[:]
            return part[rows] if cols is None else part[rows, cols]


def _keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def resolve_target_device(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def micro_args(base: ModelArgs, plan: MicroPlan, vocab_size: int) -> tuple[ModelArgs, int]:
    """Micro ModelArgs (head_dim of the base) and the base's query heads per kv head."""
    hd, groups = base.head_dim, base.n_heads // base.kv_heads
    problems = []
    if plan.dim > base.dim or plan.dim % hd:
        problems.append(f"dim {plan.dim} must be <= base dim {base.dim} and a multiple of head_dim {hd}")
    if plan.n_trunk_layers < 2 or plan.n_trunk_layers > base.n_trunk_layers:
        problems.append(f"n_trunk_layers {plan.n_trunk_layers} must be in [2, {base.n_trunk_layers}]")
    if not 1 <= plan.n_future_tokens <= base.n_future_tokens:
        problems.append(f"n_future_tokens {plan.n_future_tokens} must be in [1, {base.n_future_tokens}]")
    if plan.ffn_hidden_dim > base.ffn_hidden_dim:
        problems.append(f"ffn_hidden_dim {plan.ffn_hidden_dim} exceeds the base's {base.ffn_hidden_dim}")
    n_heads = max(plan.dim // hd, 1)
    if n_heads >= groups and n_heads % groups:
        problems.append(f"{n_heads} heads cannot keep the base's {groups} query heads per kv head")
    if problems:
        raise ArtifactError("micro plan does not fit the base: " + "; ".join(problems))
    args = ModelArgs(dim=plan.dim, n_layers=plan.n_trunk_layers + plan.n_future_tokens, n_heads=n_heads,
                     n_kv_heads=max(n_heads // groups, 1), vocab_size=vocab_size, multiple_of=base.multiple_of,
                     norm_eps=base.norm_eps, rope_theta=base.rope_theta,
                     n_future_tokens=plan.n_future_tokens, max_seq_len=plan.max_seq_len)
    return with_ffn_hidden(args, plan.ffn_hidden_dim), groups


def choose_trunk_layers(plan: MicroPlan, n_base_trunk: int) -> list[int]:
    if plan.trunk_layers is not None:
        ids = list(plan.trunk_layers)
        if len(ids) != plan.n_trunk_layers or sorted(set(ids)) != ids or not all(0 <= i < n_base_trunk for i in ids):
            raise ArtifactError(f"micro plan trunk_layers {ids}: need {plan.n_trunk_layers} increasing ids in "
                                f"[0, {n_base_trunk})")
        return ids
    n = plan.n_trunk_layers
    return [round(i * (n_base_trunk - 1) / (n - 1)) for i in range(n)]


def block_sources(base: ModelArgs, micro: ModelArgs, trunk_ids: list[int]) -> dict[str, str]:
    """Micro block prefix -> base block prefix."""
    mapping = {f"layers.{i}.": f"layers.{b}." for i, b in enumerate(trunk_ids)}
    mapping[f"layers.{micro.n_trunk_layers}."] = f"layers.{base.n_trunk_layers}."  # head 0
    mapping.update({f"extra_heads.{j}.": f"extra_heads.{j}." for j in range(micro.n_future_tokens - 1)})
    return mapping


def slice_block(reader: BaseReader, src: str, micro: ModelArgs) -> dict[str, torch.Tensor]:
    d, q, kv, ff = micro.dim, micro.n_heads * micro.head_dim, micro.kv_heads * micro.head_dim, micro.ffn_hidden_dim
    cut = {  # key -> (rows, cols); first heads / channels kept
        "attention.wq.weight": (slice(0, q), slice(0, d)), "attention.wk.weight": (slice(0, kv), slice(0, d)),
        "attention.wv.weight": (slice(0, kv), slice(0, d)), "attention.wo.weight": (slice(0, d), slice(0, q)),
        "feed_forward.w1.weight": (slice(0, ff), slice(0, d)), "feed_forward.w2.weight": (slice(0, d), slice(0, ff)),
        "feed_forward.w3.weight": (slice(0, ff), slice(0, d)),
        "attention_norm.weight": (slice(0, d), None), "ffn_norm.weight": (slice(0, d), None),
    }
    return {name: reader.get(src + name, *cut[name]).float() for name in BLOCK_KEYS}


def vocab_rows(reader: BaseReader, key: str, dim: int, mapping: list[int | None],
               gen: torch.Generator) -> torch.Tensor:
    """(V_micro, dim) rows: copied where the piece exists in the base vocab, random with the same scale else."""
    base = reader.get(key).float()[:, :dim]  # (V_base, dim)
    known = torch.tensor([i for i in mapping if i is not None], dtype=torch.long)
    copied = base[known] if len(known) else base
    out = torch.randn(len(mapping), dim, generator=gen) * copied.std() + copied.mean()
    rows = torch.tensor([r for r, i in enumerate(mapping) if i is not None], dtype=torch.long)
    if len(rows):
        out[rows] = copied
    return out


def vocab_mapping(base_tok: Tokenizer, micro_tok: Tokenizer) -> list[int | None]:
    """For every micro id, the base id of the same piece (None when the base lacks it)."""
    base_ids = {p: i for i, p in enumerate(base_tok.pieces())}
    return [base_ids.get(p) for p in micro_tok.pieces()]


def sliced_state(reader: BaseReader, base: ModelArgs, micro: ModelArgs, trunk_ids: list[int],
                 mapping: list[int | None], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {"tok_embeddings.weight": vocab_rows(reader, "tok_embeddings.weight", micro.dim, mapping, gen)}
    for dst, src in block_sources(base, micro, trunk_ids).items():
        state.update({dst + k: v for k, v in slice_block(reader, src, micro).items()})
    state["norm.weight"] = reader.get("norm.weight", slice(0, micro.dim)).float()
    state["output.weight"] = vocab_rows(reader, "output.weight", micro.dim, mapping, gen)
    return {k: state[k] for k in expected_shapes(micro)}  # Meta key order


def _base_fingerprint(layout: ModelLayout) -> dict[str, Any]:
    meta = layout.read_metadata()
    return {"model_dir": str(layout.root.resolve()), "kind": meta["kind"], "synthetic": meta["synthetic"],
            "metadata_sha256": sha256_file(layout.metadata_json),
            "weights_sha256": {k: v["sha256"] for k, v in meta["files"].items() if k.startswith("safetensors/")}}


def _existing(out: Path, derived: dict[str, Any], plan_dump: dict[str, Any], tok_sha: str, force: bool) -> str | None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    try:
        meta = ModelLayout(out).read_metadata()
        same = (meta["derived_from"] is not None
                and meta["derived_from"].get("metadata_sha256") == derived["metadata_sha256"]
                and (meta["plan"] or {}).get("requested") == plan_dump
                and meta["files"]["tokenizer/tokenizer.model"]["sha256"] == tok_sha)
        if same:
            verify_model_dir(out, full=False)
            return f"{out}: micro model already built from this base with this plan; nothing to do"
    except (ArtifactError, KeyError) as exc:
        if not force:
            raise ArtifactExists(f"{out}: exists but is not a valid micro model ({exc}); use --force") from exc
        return None
    if not force:
        raise ArtifactExists(f"{out}: holds a different micro model (other base, plan or tokenizer); use --force")
    return None


def build_micro_model(base_dir: str | Path, out_dir: str | Path, tokenizer_model: str | Path = paths.CODE_TOKENIZER,
                      plan: MicroPlan | None = None, force: bool = False) -> BuildResult:
    """Slice `base_dir` (a converted model dir) into a micro model at `out_dir`."""
    plan = plan or MicroPlan()
    base_layout, out = ModelLayout(Path(base_dir)), Path(out_dir)
    verify_model_dir(base_layout.root, full=False)
    base_args = ModelArgs.from_json(base_layout.params_json)
    micro_tok = Tokenizer(tokenizer_model)
    derived = _base_fingerprint(base_layout)
    message = _existing(out, derived, plan.model_dump(), sha256_file(micro_tok.model_path), force)
    if message is not None:
        return BuildResult(out, True, message, ModelLayout(out).read_metadata())
    args, groups = micro_args(base_args, plan, micro_tok.n_words)
    n_bytes = sum(n for _, n in iter_keys_sizes(expected_shapes(args), torch_dtype(plan.dtype).itemsize))
    if n_bytes >= plan.max_file_bytes:
        raise ArtifactError(f"micro plan gives {n_bytes} bytes of weights, over max_file_bytes {plan.max_file_bytes}")
    trunk_ids = choose_trunk_layers(plan, base_args.n_trunk_layers)
    mapping = vocab_mapping(Tokenizer(base_layout.tokenizer_model), micro_tok)
    state = sliced_state(BaseReader(base_layout), base_args, args, trunk_ids, mapping, plan.seed)
    slicing = _slicing_record(plan, base_args, args, trunk_ids, groups, mapping)
    spec = ModelDirSpec(
        args=args, dtype=plan.dtype, tokenizer_model=micro_tok.model_path, kind="micro",
        synthetic=bool(derived["synthetic"]),
        source=SourceInfo(description=f"micro model sliced from {base_layout.root.name}"
                          + (" (synthetic base)" if derived["synthetic"] else ""),
                          path=str(base_layout.root.resolve()), files={}).model_dump(),
        metadata_fields={"derived_from": derived, "plan": slicing,
                         "target_device": resolve_target_device(plan.target_device)},
    )
    meta = write_model_dir(out, spec, [list(state)], state_loader(state))
    size = ModelLayout(out).weights_file.stat().st_size
    msg = (f"{out}: micro model {meta.parameter_count} parameters, {size} bytes {plan.dtype}, trunk blocks "
           f"{trunk_ids} of {base_args.n_trunk_layers}, vocab {args.vocab_size} ({slicing['vocab_copied']} rows "
           f"copied from the base)" + (" [SYNTHETIC base]" if derived["synthetic"] else ""))
    return BuildResult(out, False, msg, meta.model_dump(), size, slicing)


def _slicing_record(plan: MicroPlan, base: ModelArgs, micro: ModelArgs, trunk_ids: list[int], groups: int,
                    mapping: list[int | None]) -> dict[str, Any]:
    copied = sum(i is not None for i in mapping)
    return {
        "requested": plan.model_dump(),
        "base_dims": {"dim": base.dim, "n_heads": base.n_heads, "n_kv_heads": base.kv_heads,
                      "n_trunk_layers": base.n_trunk_layers, "n_future_tokens": base.n_future_tokens,
                      "ffn_hidden_dim": base.ffn_hidden_dim, "vocab_size": base.vocab_size},
        "trunk_layers": trunk_ids, "head_blocks": list(range(micro.n_future_tokens)),
        "channels": f"first {micro.dim} of {base.dim}", "query_heads": list(range(micro.n_heads)),
        "kv_heads": list(range(micro.kv_heads)), "base_query_heads_per_kv_head": groups,
        "head_dim": micro.head_dim, "ffn_channels": f"first {micro.ffn_hidden_dim} of {base.ffn_hidden_dim}",
        "vocab_size": micro.vocab_size, "vocab_copied": copied, "vocab_initialised": len(mapping) - copied,
    }


def synthetic_base_args(vocab_size: int) -> ModelArgs:
    """A small 7B-shaped base (head_dim 128) that the default micro plan can be sliced from."""
    return ModelArgs(dim=768, n_layers=8, n_heads=6, vocab_size=vocab_size, multiple_of=256,
                     n_future_tokens=4, max_seq_len=2048)


def write_synthetic_base(out_dir: str | Path, tokenizer_model: str | Path, seed: int = 0,
                         args: ModelArgs | None = None) -> Path:
    """Synthetic Meta-format base checkpoint dir (marked synthetic) for runs without the real 7B_1T_4."""
    vocab = Tokenizer(tokenizer_model).n_words
    args = replace(args, vocab_size=vocab) if args is not None else synthetic_base_args(vocab)
    return write_synthetic_meta_checkpoint(out_dir, args, tokenizer_model, seed=seed)
