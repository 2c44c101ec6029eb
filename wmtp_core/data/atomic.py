"""Atomic JSONL writes for the data pipeline (built on wmtp_core.io: temp file in the target dir, then os.replace)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from wmtp_core.io import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_jsonl", "jsonl_text"]


def jsonl_text(rows: Iterable[dict]) -> str:
    """One compact JSON object per line, UTF-8 kept (not ASCII-escaped), keys in insertion order."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Write rows as JSONL atomically; returns the row count."""
    rows = list(rows)
    atomic_write_text(path, jsonl_text(rows))
    return len(rows)
