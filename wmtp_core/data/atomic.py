"""Atomic file writes: a temp file in the target directory, then os.replace (never half-written outputs)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonl_text(rows: Iterable[dict]) -> str:
    """One compact JSON object per line, UTF-8 kept (not ASCII-escaped), keys in insertion order."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Write rows as JSONL atomically; returns the row count."""
    rows = list(rows)
    atomic_write_text(path, jsonl_text(rows))
    return len(rows)
