"""Integrity checks of a model directory: every file's size and SHA256 against metadata.json.

Fast mode trusts a per-directory cache (`.verify_cache.json`: size + mtime_ns -> sha256) for files that have
not changed since they were last hashed; full mode hashes everything. Any difference raises ChecksumMismatch.
Size + mtime is not integrity (bit rot keeps both), so fast mode is only for `wmtp verify-model --fast` and the
re-check right after a model was written; loading a model to train or evaluate it always verifies in full
(MetaLlamaMTPAdapter.from_pretrained).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmtp_core.artifacts.errors import ChecksumMismatch
from wmtp_core.artifacts.layout import FileEntry, ModelLayout
from wmtp_core.io import atomic_write_json, sha256_file


@dataclass
class VerifyReport:
    model_dir: Path
    kind: str
    synthetic: bool
    files_checked: int
    hashed: list[str] = field(default_factory=list)  # files whose SHA256 was recomputed
    cached: list[str] = field(default_factory=list)  # files accepted from the size + mtime cache
    total_bytes: int = 0

    def summary(self) -> str:
        tag = " (synthetic)" if self.synthetic else ""
        return (f"{self.model_dir}: OK{tag} kind={self.kind} files={self.files_checked} "
                f"hashed={len(self.hashed)} cached={len(self.cached)} bytes={self.total_bytes}")


def file_entries(root: Path) -> dict[str, FileEntry]:
    """Size and SHA256 of every file of a model dir (metadata.json and the cache excluded)."""
    layout = ModelLayout(root)
    return {rel: FileEntry(sha256=sha256_file(root / rel), bytes=(root / rel).stat().st_size)
            for rel in layout.relative_files()}


def write_cache(root: Path, entries: dict[str, FileEntry]) -> None:
    """Record size + mtime for freshly hashed files so the next fast verification can skip them."""
    cache: dict[str, Any] = {}
    for rel, entry in entries.items():
        stat = (root / rel).stat()
        cache[rel] = {"sha256": entry.sha256, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    atomic_write_json(ModelLayout(root).verify_cache, cache)


def _read_cache(layout: ModelLayout) -> dict[str, Any]:
    try:
        data = json.loads(layout.verify_cache.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}  # a missing or damaged cache only costs a full hash
    return data if isinstance(data, dict) else {}


def _cache_hit(cache: dict[str, Any], rel: str, path: Path, entry: FileEntry) -> bool:
    hit = cache.get(rel)
    if not isinstance(hit, dict):
        return False
    stat = path.stat()
    return (hit.get("bytes") == stat.st_size and hit.get("mtime_ns") == stat.st_mtime_ns
            and hit.get("sha256") == entry.sha256)


def verify_model_dir(model_dir: str | Path, full: bool = True) -> VerifyReport:
    """Check every file listed in metadata.json (and that no unlisted file exists); raise on mismatch."""
    layout = ModelLayout(Path(model_dir))
    meta = layout.read_metadata_model()
    present = set(layout.relative_files())
    listed = set(meta.files)
    missing, extra = sorted(listed - present), sorted(present - listed)
    if missing or extra:
        raise ChecksumMismatch(f"{layout.root}: files differ from metadata.json: missing {missing}, "
                               f"not listed {extra}")
    cache = {} if full else _read_cache(layout)
    report = VerifyReport(layout.root, meta.kind, meta.synthetic, len(listed))
    for rel in sorted(listed):
        report.total_bytes += _check_file(layout, rel, meta.files[rel], cache, report)
    if report.hashed:
        _refresh_cache(layout, {rel: meta.files[rel] for rel in sorted(listed)})
    return report


def _check_file(layout: ModelLayout, rel: str, entry: FileEntry, cache: dict[str, Any],
                report: VerifyReport) -> int:
    path = layout.root / rel
    size = path.stat().st_size
    if size != entry.bytes:
        raise ChecksumMismatch(f"{path}: size {size} bytes differs from metadata.json ({entry.bytes} bytes); "
                               "the file is truncated or was replaced")
    if _cache_hit(cache, rel, path, entry):
        report.cached.append(rel)
        return size
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ChecksumMismatch(f"{path}: SHA256 {actual} differs from metadata.json ({entry.sha256}); "
                               "the file is corrupted or was modified")
    report.hashed.append(rel)
    return size


def _refresh_cache(layout: ModelLayout, entries: dict[str, FileEntry]) -> None:
    try:
        write_cache(layout.root, entries)
    except OSError as exc:  # read-only model dirs still verify; they just cannot cache
        print(f"warning: {layout.verify_cache}: cache not written ({exc})")
