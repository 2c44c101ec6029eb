"""Rho-1 reference conversion: a tiny random transformers LlamaForCausalLM, sharded, converted, logits reproduced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.fixtures.models import assert_close, small_tokenizer, tiny_model_dir
from wmtp_core.artifacts.convert_reference import convert_hf_llama
from wmtp_core.artifacts.errors import StateDictMismatch, TokenizerMismatch
from wmtp_core.artifacts.layout import ModelLayout
from wmtp_core.cli import main
from wmtp_core.model.adapter import MetaLlamaMTPAdapter

pytestmark = pytest.mark.slow  # importing transformers takes tens of seconds on a busy 2-core machine


def _hf_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=400, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, attn_implementation="eager")
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # random norms so a swapped norm mapping would show
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.add_(0.1 * torch.randn_like(param))
    return model


def _save_sharded_bin(model, out: Path, n_shards: int = 3) -> Path:
    """HF's sharded PyTorch format: pytorch_model-0000i-of-0000n.bin + pytorch_model.bin.index.json."""
    out.mkdir(parents=True)
    state = model.state_dict()
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # older HF checkpoints stored it
    keys = list(state)
    weight_map = {}
    for i in range(n_shards):
        name = f"pytorch_model-{i + 1:05d}-of-{n_shards:05d}.bin"
        part = {k: state[k].clone() for k in keys[i::n_shards]}
        torch.save(part, out / name)
        weight_map.update(dict.fromkeys(part, name))
    (out / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model.config.to_json_file(str(out / "config.json"))
    shutil.copyfile(small_tokenizer("code"), out / "tokenizer.model")
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    return out


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hf")
    model = _hf_model()
    tokens = torch.randint(0, 400, (2, 13), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(tokens).logits  # (B, S, V)
    bin_dir = _save_sharded_bin(model, root / "bin")
    st_dir = root / "st"
    model.save_pretrained(str(st_dir), max_shard_size="100KB")
    shutil.copyfile(small_tokenizer("code"), st_dir / "tokenizer.model")
    return {"bin": bin_dir, "st": st_dir, "tokens": tokens, "logits": logits}


def _our_logits(model_dir: Path, tokens: torch.Tensor) -> torch.Tensor:
    adapter = MetaLlamaMTPAdapter.from_pretrained(model_dir)
    assert adapter.args.n_future_tokens == 1
    with torch.no_grad():
        return adapter.forward(tokens)[:, :, 0]


@pytest.mark.parametrize("fmt", ["bin", "st"])
def test_fp32_conversion_reproduces_hf_logits(hf, fmt: str, tmp_path: Path) -> None:
    src = hf[fmt]
    assert len(list(src.glob("*.bin" if fmt == "bin" else "*.safetensors"))) > 1  # really sharded
    result = convert_hf_llama(src, tmp_path / "ref", dtype="float32")
    assert_close(_our_logits(result.out_dir, hf["tokens"]), hf["logits"], rtol=0, atol=1e-4)
    meta = result.metadata
    assert meta["kind"] == "reference" and meta["status"] == "required" and meta["n_future_tokens"] == 1
    assert meta["tokenizer_shared_with"] is None
    assert json.loads(ModelLayout(result.out_dir).config_json.read_text())["intermediate_size"] == 160
    if fmt == "bin":
        assert meta["tolerated_keys"] == ["model.layers.0.self_attn.rotary_emb.inv_freq"]
        assert (ModelLayout(result.out_dir).tokenizer_dir / "hf_tokenizer_config.json").is_file()


def test_fp16_conversion_is_close_and_rerun_is_noop(hf, tmp_path: Path) -> None:
    result = convert_hf_llama(hf["bin"], tmp_path / "ref")
    assert result.metadata["dtype"] == "float16"
    assert_close(_our_logits(result.out_dir, hf["tokens"]), hf["logits"], rtol=0, atol=2e-2)
    assert convert_hf_llama(hf["bin"], tmp_path / "ref").skipped


def test_shared_tokenizer_recorded_only_when_identical(hf, tmp_path: Path) -> None:
    same = tiny_model_dir(tmp_path, tokenizer_model=small_tokenizer("code"), name="meta-llama-mtp")
    result = convert_hf_llama(hf["bin"], tmp_path / "ref", shared_with=same)
    assert result.metadata["tokenizer_shared_with"] == "meta-llama-mtp"
    other = tiny_model_dir(tmp_path, tokenizer_model=small_tokenizer("prose"), name="other-base")
    with pytest.raises(TokenizerMismatch, match="400 pieces.*330"):
        convert_hf_llama(hf["bin"], tmp_path / "ref2", shared_with=other)
    assert not (tmp_path / "ref2").exists()


def test_reward_kind_is_optional_and_cli_works(hf, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["convert-reference", "--source", str(hf["st"]), "--out", str(tmp_path / "rm"), "--kind", "reward",
                 "--base", str(tmp_path / "no-base")])
    assert code == 0
    assert ModelLayout(tmp_path / "rm").read_metadata()["status"] == "optional"
    assert "tokenizer_shared_with is not recorded" in capsys.readouterr().err


def test_unknown_hf_tensor_is_reported(hf, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(hf["bin"], src)
    index = json.loads((src / "pytorch_model.bin.index.json").read_text())
    shard = src / "pytorch_model-00001-of-00003.bin"
    part = torch.load(shard, weights_only=True)
    part["score.weight"] = torch.zeros(1, 64)
    torch.save(part, shard)
    index["weight_map"]["score.weight"] = shard.name
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(StateDictMismatch, match="score.weight"):
        convert_hf_llama(src, tmp_path / "ref")
