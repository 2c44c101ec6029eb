"""Rho-1 training refuses a reference whose tokenizer differs from the policy's, even at equal vocabulary size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.fixtures.models import _train_sp, tiny_model_dir
from tests.fixtures.train import train_config, write_tiny_datasets
from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core.train.run import RunSetupError, load_models

_OTHER_LINES = ["SELECT name, price FROM items WHERE price > 10 ORDER BY name;",
                "<div class='row'><span>Total: 42</span></div>",
                "Les sanglots longs des violons de l'automne blessent mon coeur.",
                "fn main() { let v: Vec<u32> = (0..9).collect(); println!(\"{:?}\", v); }"]
_CODE_LINES = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i * i)\n",
               "n = int(input())\nprint(sum(map(int, input().split())))\n"]


def _tokenizers(tmp_path: Path) -> tuple[Path, Path]:
    a = _train_sp(_CODE_LINES, 340, tmp_path / "tok-a.model")
    b = _train_sp(_OTHER_LINES, 340, tmp_path / "tok-b.model")
    ta, tb = Tokenizer(a), Tokenizer(b)
    assert ta.n_words == tb.n_words == 340 and ta.pieces() != tb.pieces()  # same size, different pieces
    return a, b


def _cfg(tmp_path: Path, policy_tok: Path, ref_tok: Path):
    model = tiny_model_dir(tmp_path, tokenizer_model=policy_tok)
    ref = tiny_model_dir(tmp_path, tokenizer_model=ref_tok, seed=1, name="reference")
    return train_config(tmp_path, "rho1", model, write_tiny_datasets(tmp_path / "d"), reference_dir=ref)


def test_reference_with_other_tokenizer_of_equal_size_is_refused(tmp_path: Path) -> None:
    a, b = _tokenizers(tmp_path)
    cfg = _cfg(tmp_path, a, b)
    with pytest.raises(RunSetupError) as err:
        load_models(cfg, torch.device("cpu"))
    msg = str(err.value)
    assert "Rho-1 reference tokenizer" in msg and "differ at id" in msg
    for name in ("reference", "tiny-model"):  # both tokenizer files are named
        assert any(w.startswith(str(tmp_path / name)) and w.endswith("tokenizer.model") for w in msg.split()), name


def test_reference_with_the_same_tokenizer_loads(tmp_path: Path) -> None:
    a, _ = _tokenizers(tmp_path)
    models, _ = load_models(_cfg(tmp_path, a, a), torch.device("cpu"))
    assert models.reference is not None
