"""HF -> Meta name mapping, rotary un-permutation and config checks (no transformers import)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wmtp_core.artifacts.convert_reference import hf_to_meta_name, read_hf_config, unpermute_rotary
from wmtp_core.artifacts.errors import ConfigMismatch, StateDictMismatch


def _hf_permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reference: HF's layout puts the even members of each rotary pair first, then the odd ones, per head."""
    rows, cols = w.shape
    hd = rows // n_heads
    out = torch.empty_like(w)
    for h in range(n_heads):
        for i in range(hd // 2):
            out[h * hd + i] = w[h * hd + 2 * i]
            out[h * hd + hd // 2 + i] = w[h * hd + 2 * i + 1]
    return out


def test_unpermute_inverts_hf_layout() -> None:
    w = torch.randn(4 * 8, 5)
    assert torch.equal(unpermute_rotary(_hf_permute(w, 4), 4), w)


def test_name_mapping() -> None:
    assert hf_to_meta_name("model.embed_tokens.weight") == "tok_embeddings.weight"
    assert hf_to_meta_name("model.layers.7.self_attn.k_proj.weight") == "layers.7.attention.wk.weight"
    assert hf_to_meta_name("model.layers.0.mlp.gate_proj.weight") == "layers.0.feed_forward.w1.weight"
    assert hf_to_meta_name("model.layers.0.mlp.down_proj.weight") == "layers.0.feed_forward.w2.weight"
    assert hf_to_meta_name("model.layers.0.mlp.up_proj.weight") == "layers.0.feed_forward.w3.weight"
    assert hf_to_meta_name("model.layers.3.post_attention_layernorm.weight") == "layers.3.ffn_norm.weight"
    assert hf_to_meta_name("lm_head.weight") == "output.weight"
    assert hf_to_meta_name("model.layers.1.self_attn.rotary_emb.inv_freq") is None
    with pytest.raises(StateDictMismatch, match="v_head.weight"):
        hf_to_meta_name("v_head.weight")


BASE_CFG = {"model_type": "llama", "hidden_size": 2560, "intermediate_size": 6912, "num_hidden_layers": 32,
            "num_attention_heads": 20, "num_key_value_heads": 20, "vocab_size": 32000, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "max_position_embeddings": 4096, "hidden_act": "silu"}


def _write(tmp_path: Path, **changes) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({**BASE_CFG, **changes}))
    return tmp_path


def test_sheared_llama_dims(tmp_path: Path) -> None:
    args, _ = read_hf_config(_write(tmp_path))
    assert args.ffn_hidden_dim == 6912 and args.n_future_tokens == 1 and args.n_layers == 32
    assert args.multiple_of == 256 and args.ffn_dim_multiplier is None


@pytest.mark.parametrize("changes, match", [
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope scaling 'linear'"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"model_type": "gpt2"}, "model_type 'gpt2'"),
    ({"attention_bias": True}, "attention_bias"),
])
def test_unsupported_variants_are_named(tmp_path: Path, changes: dict, match: str) -> None:
    with pytest.raises(ConfigMismatch, match=match):
        read_hf_config(_write(tmp_path, **changes))


def test_missing_field_is_named(tmp_path: Path) -> None:
    cfg = dict(BASE_CFG)
    del cfg["intermediate_size"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigMismatch, match="field intermediate_size: missing"):
        read_hf_config(tmp_path)
