"""wmtp_core.io: atomic writes leave either the old or the new content, never a partial file or a temp file;
read_json names the file and the reason for every failure."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from wmtp_core.io import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
    sha256_file,
)


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


class _ReadError(Exception):
    pass


def test_read_json_returns_the_parsed_value(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "ok.json", {"k": [1, 2], "s": "é"})
    (tmp_path / "list.json").write_text("[1, 2]\n", encoding="utf-8")
    assert read_json(tmp_path / "ok.json", expect=dict) == {"k": [1, 2], "s": "é"}
    assert read_json(str(tmp_path / "list.json")) == [1, 2]
    assert read_json(tmp_path / "list.json", expect=list) == [1, 2]


def test_read_json_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not found$"):
        read_json(path)
    with pytest.raises(_ReadError, match="absent.json: not found"):
        read_json(path, _ReadError)
    with pytest.raises(FileNotFoundError, match=r"absent.json: missing; run setup$"):
        read_json(path, _ReadError, missing=lambda p: FileNotFoundError(f"{p}: missing; run setup"))
    (tmp_path / "dir.json").mkdir()  # a directory is not a JSON file either
    with pytest.raises(_ReadError, match="dir.json: not found"):
        read_json(tmp_path / "dir.json", _ReadError)


def test_read_json_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}\n', encoding="utf-8")
    with pytest.raises(_ReadError, match=rf"^{re.escape(str(path))}:4: invalid JSON: Expecting value$") as info:
        read_json(path, _ReadError)
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    assert (info.value.__cause__.lineno, info.value.__cause__.colno) == (4, 1)


def test_read_json_not_utf8_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(_ReadError, match=r"latin1.json: unreadable: not UTF-8"):
        read_json(path, _ReadError)


def test_read_json_wrong_top_level_type(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1]", encoding="utf-8")
    (tmp_path / "num.json").write_text("3", encoding="utf-8")
    with pytest.raises(_ReadError, match=r"list.json: top level is an array, expected an object$"):
        read_json(tmp_path / "list.json", _ReadError, expect=dict)
    with pytest.raises(ValueError, match=r"num.json: top level is a number, expected an array$"):
        read_json(tmp_path / "num.json", expect=list)
