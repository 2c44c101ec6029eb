"""Content fingerprints for cache keys: every `Path` in a task's inputs becomes the SHA256 of its contents.

A file hashes to its SHA256; a directory to the SHA256 of its sorted (relative path, file SHA256) list (hidden
entries, which are caches and locks, left out); a missing
path to a marker, so creating it later changes the key. Hashes are memoised per (path, size, mtime_ns) in this
process, so a 13 GB checkpoint is read once per change, not once per task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from wmtp_core.io import sha256_file

_MEMO: dict[tuple[str, int, int], str] = {}
_IGNORED_NAMES = {"__pycache__"}


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MEMO:
        _MEMO[key] = sha256_file(path)
    return _MEMO[key]


def tree_sha256(root: Path) -> str:
    """SHA256 over the sorted (relative path, SHA256) of every regular file under `root` (hidden entries skipped)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not _ignored(p, root)):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _ignored(path: Path, root: Path) -> bool:
    """Hidden files and folders are caches and locks (e.g. the `datasets` library's `.cache/` that training
    writes under the datasets root, `.verify_cache.json`), not content; temporary files are half-written."""
    parts = path.relative_to(root).parts
    return any(part.startswith(".") or part in _IGNORED_NAMES or part.endswith(".tmp") for part in parts)


def path_fingerprint(path: Path) -> dict[str, str]:
    if path.is_file():
        return {"path": str(path), "sha256": file_sha256(path)}
    if path.is_dir():
        return {"path": str(path), "tree_sha256": tree_sha256(path)}
    return {"path": str(path), "missing": "1"}


def fingerprint(value: Any) -> Any:
    """A JSON-ready stand-in for `value` in which every Path is replaced by its content fingerprint."""
    if isinstance(value, Path):
        return path_fingerprint(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__type__": type(value).__qualname__, **{k: fingerprint(v) for k, v in fields.items()}}
    if isinstance(value, BaseModel):
        return {"__type__": type(value).__qualname__, **{k: fingerprint(v) for k, v in dict(value).items()}}
    if isinstance(value, dict):
        return {str(k): fingerprint(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [fingerprint(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((fingerprint(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot fingerprint a {type(value).__name__} for a cache key; pass paths, plain values "
                    f"or result dataclasses to tasks")


def digest(value: Any) -> str:
    canonical = json.dumps(fingerprint(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
