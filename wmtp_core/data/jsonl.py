"""Line-by-line JSONL reading that reports non-UTF-8 bytes, malformed JSON and non-objects per line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from wmtp_core.data.errors import DatasetError, RowError


def _decode(raw: bytes, file: str, line_no: int) -> str | RowError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = raw[err.start : err.start + 1].hex()
        return RowError(file, line_no, "<bytes>", f"not valid UTF-8 (byte 0x{bad} at column {err.start + 1})")


def _parse(text: str, file: str, line_no: int) -> dict | RowError:
    if not text.strip():
        return RowError(file, line_no, "<json>", "blank line")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return RowError(file, line_no, "<json>", f"malformed JSON: {err.msg} (column {err.colno})")
    if not isinstance(obj, dict):
        return RowError(file, line_no, "<json>", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def iter_jsonl(path: Path, display: str | None = None) -> Iterator[tuple[int, dict | RowError]]:
    """(1-based line number, parsed object or that line's error) per line; the final newline is optional."""
    if not path.is_file():
        raise DatasetError(f"{display or path}: required file not found")
    file = display or str(path)
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i, raw in enumerate(lines, start=1):
        text = _decode(raw.rstrip(b"\r"), file, i)
        yield i, text if isinstance(text, RowError) else _parse(text, file, i)
