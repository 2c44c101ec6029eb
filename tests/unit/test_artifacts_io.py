"""wmtp_core.io: atomic writes leave either the old or the new content, never a partial file or a temp file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from wmtp_core.io import atomic_output, atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # > 1 MiB: several chunks
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_atomic_writes_create_and_replace(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a" / "t.txt", "one")
    atomic_write_text(tmp_path / "a" / "t.txt", "two")
    atomic_write_json(tmp_path / "a" / "j.json", {"k": [1, 2]})
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01")
    assert (tmp_path / "a" / "t.txt").read_text() == "two"
    assert json.loads((tmp_path / "a" / "j.json").read_text()) == {"k": [1, 2]}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin", "j.json", "t.txt"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_directory_output_replaces_whole_tree(tmp_path: Path) -> None:
    out = tmp_path / "model"
    with atomic_output(out) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("1")
    with atomic_output(out) as tmp:
        tmp.mkdir()
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_nothing_written_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_output(tmp_path / "x"):
            pass
