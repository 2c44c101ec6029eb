"""Meta checkpoint conversion: logits preserved, metadata complete, each bad input its own clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.fixtures.models import small_tokenizer, synthetic_source
from vendor.meta_llama.model import ROPE_FREQS_KEY, ModelArgs, Transformer, load_meta_state_dict
from wmtp_core.artifacts.convert import convert_meta_checkpoint
from wmtp_core.artifacts.errors import ArtifactError, ArtifactExists, ConfigMismatch, StateDictMismatch
from wmtp_core.artifacts.layout import ModelLayout
from wmtp_core.io import sha256_file
from wmtp_core.model.adapter import MetaLlamaMTPAdapter


def _source_logits(src: Path, tokens: torch.Tensor) -> torch.Tensor:
    """Reference: the source state dict cast through fp16 (the artifact dtype), run in fp32."""
    args = ModelArgs.from_json(src / "params.json")
    state = torch.load(src / "consolidated.pth", weights_only=True)
    model = Transformer(args).eval()
    load_meta_state_dict(model, {k: v.to(torch.float16).float() for k, v in state.items()})
    with torch.no_grad():
        return model(tokens)


def _rewrite_checkpoint(src: Path, edit) -> None:
    state = torch.load(src / "consolidated.pth", weights_only=True)
    edit(state)
    torch.save(state, src / "consolidated.pth")


def test_convert_then_load_reproduces_source_logits(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    result = convert_meta_checkpoint(src, tmp_path / "out")
    assert not result.skipped and result.tolerated_keys == [ROPE_FREQS_KEY]
    adapter = MetaLlamaMTPAdapter.from_pretrained(result.out_dir)
    tokens = torch.randint(0, adapter.args.vocab_size, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = adapter.forward(tokens)
    assert got.shape == (2, 11, 4, adapter.args.vocab_size)
    assert torch.equal(got, _source_logits(src, tokens))
    state = torch.load(src / "consolidated.pth", weights_only=True)
    assert set(adapter.model.state_dict()) == set(state) - {ROPE_FREQS_KEY}


def test_metadata_is_complete_and_hashes_match(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    out = convert_meta_checkpoint(src, tmp_path / "out").out_dir
    layout = ModelLayout(out)
    meta = layout.read_metadata()
    assert meta["format_version"] == 1 and meta["kind"] == "base" and meta["dtype"] == "float16"
    assert meta["synthetic"] is True and "synthetic" in meta["source"]["description"]
    assert meta["source"]["files"]["consolidated.pth"]["sha256"] == sha256_file(src / "consolidated.pth")
    assert set(meta["files"]) == {"safetensors/model.safetensors", "configs/params.json", "configs/config.json",
                                  "configs/meta_adapter.yaml", "tokenizer/tokenizer.model",
                                  "tokenizer/tokenizer_config.json"}
    for rel, entry in meta["files"].items():
        assert entry["sha256"] == sha256_file(out / rel), rel
    args = ModelArgs.from_json(layout.params_json)
    assert meta["parameter_count"] == sum(p.numel() for p in Transformer(args).parameters())
    assert meta["created_at"].endswith("+00:00") and meta["tolerated_keys"] == [ROPE_FREQS_KEY]
    from safetensors import safe_open
    with safe_open(str(layout.weights_file), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
        assert "layers.0.attention.wq.weight" in f.keys()  # Meta names unchanged
    adapter_cfg = layout.adapter_yaml.read_text()
    assert f"intermediate_size: {args.ffn_hidden_dim}" in adapter_cfg and "dtype: float16" in adapter_cfg


def test_sharded_output_has_index_and_same_weights(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    single = convert_meta_checkpoint(src, tmp_path / "single")
    sharded = convert_meta_checkpoint(src, tmp_path / "sharded", max_shard_bytes=150_000)
    layout = ModelLayout(sharded.out_dir)
    assert layout.index_file.is_file() and len(layout.weight_files()) > 2
    index = json.loads(layout.index_file.read_text())
    assert set(index["weight_map"]) == set(MetaLlamaMTPAdapter.from_pretrained(single.out_dir).model.state_dict())
    a = MetaLlamaMTPAdapter.from_pretrained(single.out_dir).model.state_dict()
    b = MetaLlamaMTPAdapter.from_pretrained(sharded.out_dir).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rerun_on_same_source_is_a_noop(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    first = convert_meta_checkpoint(src, tmp_path / "out")
    mtime = ModelLayout(first.out_dir).weights_file.stat().st_mtime_ns
    second = convert_meta_checkpoint(src, tmp_path / "out")
    assert second.skipped and "nothing to do" in second.message
    assert ModelLayout(first.out_dir).weights_file.stat().st_mtime_ns == mtime


def test_different_existing_artifact_needs_force(tmp_path: Path) -> None:
    out = convert_meta_checkpoint(synthetic_source(tmp_path, seed=0, name="a"), tmp_path / "out").out_dir
    other = synthetic_source(tmp_path, seed=1, name="b")
    with pytest.raises(ArtifactExists, match="different artifact.*--force"):
        convert_meta_checkpoint(other, out)
    replaced = convert_meta_checkpoint(other, out, force=True)
    assert not replaced.skipped
    assert replaced.metadata["source"]["path"] == str(other.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]  # no temp dirs left behind


def test_foreign_directory_at_out_needs_force(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactExists, match="not a valid model directory"):
        convert_meta_checkpoint(synthetic_source(tmp_path), tmp_path / "out")


def test_missing_key_is_reported(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    _rewrite_checkpoint(src, lambda s: s.pop("extra_heads.1.feed_forward.w2.weight"))
    with pytest.raises(StateDictMismatch, match=r"missing keys \[extra_heads\.1\.feed_forward\.w2\.weight\]"):
        convert_meta_checkpoint(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unexpected_key_is_reported(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    _rewrite_checkpoint(src, lambda s: s.__setitem__("layers.0.attention.bias", torch.zeros(3)))
    with pytest.raises(StateDictMismatch, match=r"unexpected keys \[layers\.0\.attention\.bias\]"):
        convert_meta_checkpoint(src, tmp_path / "out")


def test_wrong_shape_is_reported(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    _rewrite_checkpoint(src, lambda s: s.__setitem__("norm.weight", torch.ones(63, dtype=torch.bfloat16)))
    with pytest.raises(StateDictMismatch, match=r"wrong shapes \[norm\.weight: \(63,\) \(expected \(64,\)\)\]"):
        convert_meta_checkpoint(src, tmp_path / "out")


def test_params_that_do_not_match_the_checkpoint_are_reported(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    params = json.loads((src / "params.json").read_text())
    (src / "params.json").write_text(json.dumps({**params, "n_layers": 7}))
    with pytest.raises(StateDictMismatch, match="missing keys.*layers.3"):
        convert_meta_checkpoint(src, tmp_path / "out")


def test_params_vocab_that_disagrees_with_tokenizer_is_reported(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    params = json.loads((src / "params.json").read_text())
    (src / "params.json").write_text(json.dumps({**params, "vocab_size": 999}))
    with pytest.raises(ConfigMismatch, match="999"):
        convert_meta_checkpoint(src, tmp_path / "out")


def test_vocab_size_minus_one_takes_the_tokenizer_size(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    params = json.loads((src / "params.json").read_text())
    (src / "params.json").write_text(json.dumps({**params, "vocab_size": -1, "note": "extra fields allowed"}))
    out = convert_meta_checkpoint(src, tmp_path / "out").out_dir
    saved = json.loads(ModelLayout(out).params_json.read_text())
    assert saved["vocab_size"] == 400 and saved["note"] == "extra fields allowed"


def test_invalid_params_json_names_the_line(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    (src / "params.json").write_text('{\n"dim": 64,\n oops\n}')
    with pytest.raises(ArtifactError, match=r"params.json:3: invalid JSON"):
        convert_meta_checkpoint(src, tmp_path / "out")
    (src / "params.json").write_text('[64, 4]')
    with pytest.raises(ArtifactError, match=r"params.json: top level is an array, expected an object"):
        convert_meta_checkpoint(src, tmp_path / "out")


def test_non_float_tensor_is_rejected(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    _rewrite_checkpoint(src, lambda s: s.__setitem__("norm.weight", torch.ones(64, dtype=torch.int32)))
    with pytest.raises(ArtifactError, match="non-floating.*norm.weight: torch.int32"):
        convert_meta_checkpoint(src, tmp_path / "out")


def test_fp16_overflow_is_an_error_not_inf(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    _rewrite_checkpoint(src, lambda s: s["norm.weight"].fill_(1e6))
    with pytest.raises(ArtifactError, match="norm.weight overflows"):
        convert_meta_checkpoint(src, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["meta-src"]  # staging dir removed


def test_missing_source_files_are_named(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path)
    (src / "tokenizer.model").unlink()
    with pytest.raises(ArtifactError, match="tokenizer.model: missing"):
        convert_meta_checkpoint(src, tmp_path / "out")
    (src / "consolidated.pth").unlink()
    with pytest.raises(ArtifactError, match="no consolidated.pth"):
        convert_meta_checkpoint(src, tmp_path / "out")


def test_real_sources_are_not_marked_synthetic(tmp_path: Path) -> None:
    src = synthetic_source(tmp_path, tokenizer_model=small_tokenizer())
    os.remove(src / "SYNTHETIC.json")
    meta = convert_meta_checkpoint(src, tmp_path / "out").metadata
    assert meta["synthetic"] is False
