"""Integrity: corrupted, truncated, missing or unlisted files are clear errors; the fast path uses the cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.models import small_tokenizer, tiny_model_dir
from wmtp_core.artifacts.errors import ChecksumMismatch
from wmtp_core.artifacts.layout import ModelLayout
from wmtp_core.artifacts.verify import verify_model_dir
from wmtp_core.cli import main
from wmtp_core.model.adapter import MetaLlamaMTPAdapter


def _flip_byte(path: Path, offset: int = -100, keep_mtime: bool = False) -> None:
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tiny_model_dir(tmp_path, tokenizer_model=small_tokenizer())


def test_clean_dir_verifies_full_and_fast(model_dir: Path) -> None:
    full = verify_model_dir(model_dir, full=True)
    assert full.files_checked == 6 and len(full.hashed) == 6 and full.synthetic
    fast = verify_model_dir(model_dir, full=False)
    assert fast.cached == sorted(ModelLayout(model_dir).read_metadata()["files"]) and fast.hashed == []


def test_corrupted_byte_is_detected_on_verify_and_on_load(model_dir: Path) -> None:
    weights = ModelLayout(model_dir).weights_file
    _flip_byte(weights)
    with pytest.raises(ChecksumMismatch, match=r"model.safetensors: SHA256 .* differs .* corrupted"):
        verify_model_dir(model_dir, full=True)
    with pytest.raises(ChecksumMismatch, match="corrupted"):
        verify_model_dir(model_dir, full=False)  # mtime changed -> cache miss -> hashed
    with pytest.raises(ChecksumMismatch):
        MetaLlamaMTPAdapter.from_pretrained(model_dir)


def test_full_verification_catches_corruption_that_keeps_size_and_mtime(model_dir: Path) -> None:
    verify_model_dir(model_dir, full=False)
    _flip_byte(ModelLayout(model_dir).tokenizer_model, offset=50, keep_mtime=True)
    with pytest.raises(ChecksumMismatch, match="tokenizer.model"):
        verify_model_dir(model_dir, full=True)


def test_loading_hashes_in_full_despite_a_warm_cache(model_dir: Path) -> None:
    """Bit rot keeps size and mtime: the fast cache would accept it, loading for train/eval must not."""
    verify_model_dir(model_dir, full=False)  # cache warm for every file
    _flip_byte(ModelLayout(model_dir).weights_file, keep_mtime=True)
    assert verify_model_dir(model_dir, full=False).hashed == []  # the cache cannot tell
    with pytest.raises(ChecksumMismatch, match=r"model.safetensors: SHA256 .* corrupted"):
        MetaLlamaMTPAdapter.from_pretrained(model_dir)


def test_cli_eval_on_corrupted_model_is_a_clean_error(model_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _flip_byte(ModelLayout(model_dir).weights_file)
    code = main(["eval", "--model", str(model_dir), "--dataset", "humaneval", "--n", "1", "--k", "1",
                 "--limit", "1", "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert code == 1 and "error: " in err and "model.safetensors: SHA256" in err and "Traceback" not in err


def test_truncated_missing_and_unlisted_files(model_dir: Path) -> None:
    layout = ModelLayout(model_dir)
    layout.params_json.write_text(layout.params_json.read_text()[:-5])
    with pytest.raises(ChecksumMismatch, match="params.json: size .* truncated"):
        verify_model_dir(model_dir)
    layout.params_json.unlink()
    with pytest.raises(ChecksumMismatch, match=r"missing \['configs/params.json'\]"):
        verify_model_dir(model_dir)


def test_unlisted_file_is_an_error(model_dir: Path) -> None:
    (ModelLayout(model_dir).safetensors_dir / "stray.safetensors").write_bytes(b"x")
    with pytest.raises(ChecksumMismatch, match=r"not listed \['safetensors/stray.safetensors'\]"):
        verify_model_dir(model_dir)


def test_cli_verify_model_loads_and_reports(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-model", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "OK (synthetic)" in out and "finite" in out
    _flip_byte(ModelLayout(model_dir).weights_file)
    assert main(["verify-model", str(model_dir)]) == 1
    assert "corrupted" in capsys.readouterr().err


def test_not_a_model_dir(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="metadata.json missing"):
        verify_model_dir(tmp_path)
