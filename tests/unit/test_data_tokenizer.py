"""The shipped code tokenizer: LLaMA special ids, exact code round-trip, and byte-identical re-training."""

from __future__ import annotations

import subprocess
import sys

import sentencepiece as spm

from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core import paths
from wmtp_core.data.sp import SpTokenizer
from wmtp_core.data.tokenizer_train import TokenizerSpec, train_code_tokenizer, train_tokenizer_bytes

CODE = 'def f(x):\n\tif x:\n        return  x  # é 你好 ∑\n\n\n    pass\r\nprint("a\\n")\n'


def test_shipped_tokenizer_special_ids_and_size() -> None:
    sp = spm.SentencePieceProcessor(model_file=str(paths.CODE_TOKENIZER))
    assert sp.vocab_size() == 8000
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert sp.id_to_piece(3) == "<0x00>" and sp.id_to_piece(258) == "<0xFF>"


def test_shipped_tokenizer_round_trips_code_exactly() -> None:
    tok = Tokenizer(paths.CODE_TOKENIZER)
    ids = tok.encode(CODE)
    assert tok.sp.unk_id() not in ids
    assert tok.decode(ids) == CODE


def test_literal_eos_text_is_not_the_eos_id() -> None:
    tok = Tokenizer(paths.CODE_TOKENIZER)
    assert tok.eos_id not in tok.encode("x = '</s>'")


def test_shipped_file_equals_fresh_training(tmp_path) -> None:
    out = train_code_tokenizer(paths.DATASETS_ROOT, tmp_path / "fresh.model")
    assert out.read_bytes() == paths.CODE_TOKENIZER.read_bytes()


def test_cli_trains_the_same_file_and_reports_bad_specs(tmp_path, capsys) -> None:
    from wmtp_core.cli import main

    assert main(["train-tokenizer", "--out", str(tmp_path / "cli.model")]) == 0
    assert (tmp_path / "cli.model").read_bytes() == paths.CODE_TOKENIZER.read_bytes()
    assert main(["train-tokenizer", "--out", str(tmp_path / "big.model"), "--vocab-size", "100000"]) == 2
    assert "train-tokenizer: error:" in capsys.readouterr().err
    assert not (tmp_path / "big.model").exists()


def test_training_is_deterministic_and_model_type_is_checked() -> None:
    lines = [f"def f{i}(a, b):" for i in range(200)] + ["    return a + b", "print(f1(2, 3))"] * 50
    spec = TokenizerSpec(vocab_size=300)
    assert train_tokenizer_bytes(lines, spec) == train_tokenizer_bytes(lines, spec)
    try:
        train_tokenizer_bytes(lines, TokenizerSpec(vocab_size=300, model_type="word"))
    except ValueError as err:
        assert "model_type" in str(err)
    else:
        raise AssertionError("an unknown model_type must be rejected")


def test_light_wrapper_matches_vendor_tokenizer() -> None:
    for model in (paths.CODE_TOKENIZER, paths.MISTRAL_TOKENIZER):
        light, vendor = SpTokenizer(model), Tokenizer(model)
        assert (light.bos_id, light.eos_id, light.pad_id) == (vendor.bos_id, vendor.eos_id, vendor.pad_id)
        assert light.encode(CODE, bos=True, eos=True) == vendor.encode(CODE, bos=True, eos=True)
        assert light.decode(light.encode(CODE)) == CODE


def test_data_pipeline_does_not_import_torch() -> None:
    code = "import sys, wmtp_core.data.api, wmtp_core.data.loading; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
