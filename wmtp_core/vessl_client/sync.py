"""Sync local directories to a VESSL Storage volume (and back) with a SHA256 manifest.

Remote layout: `<ref>/<basename of each source>/...` plus `<ref>/.wmtp-manifest.json`
({"version": 1, "files": {rel: {"sha256", "size"}}}). A file is skipped when the manifest has its SHA256 and
the volume lists it with the same size. The manifest is re-uploaded every few files, so an interrupted sync
resumes where it stopped. After uploading, every file is checked in the listing (size) and, with
verify="hash", downloaded again and hashed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wmtp_core.io import sha256_file
from wmtp_core.vessl_client.manifest import MANIFEST_NAME, manifest_text, parse_manifest
from wmtp_core.vessl_client.storage import VolumeRef, VolumeStore

FLUSH_EVERY_FILES = 8
FLUSH_EVERY_BYTES = 256 * 1024 * 1024


class SyncError(RuntimeError):
    """Sync failed (bad source, verification mismatch, unreadable manifest)."""


@dataclass(frozen=True)
class FileEntry:
    rel: str  # path under the target ref, '/'-separated
    local: Path
    size: int
    sha256: str


@dataclass
class SyncReport:
    target: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    dry_run: bool = False
    bytes_uploaded: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "dry_run": self.dry_run, "uploaded": self.uploaded,
                "skipped": self.skipped, "verified": len(self.verified), "bytes_uploaded": self.bytes_uploaded}


def scan_sources(sources: Sequence[Path]) -> list[FileEntry]:
    """Every file under each source, addressed as `<source basename>/<relative path>`; sorted."""
    entries: dict[str, FileEntry] = {}
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise SyncError(f"{src}: source does not exist")
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for path in files:
            rel = src.name if path == src else f"{src.name}/{path.relative_to(src).as_posix()}"
            if rel in entries:
                raise SyncError(f"{path}: remote path {rel!r} also produced by {entries[rel].local}")
            entries[rel] = FileEntry(rel, path, path.stat().st_size, sha256_file(path))
    return [entries[k] for k in sorted(entries)]


def read_manifest(store: VolumeStore, ref: VolumeRef, listing: dict[str, int]) -> dict[str, dict]:
    if MANIFEST_NAME not in listing:
        return {}
    return parse_manifest(store.read_bytes(ref, MANIFEST_NAME), f"{ref.url}/{MANIFEST_NAME}", SyncError)


def write_manifest(store: VolumeStore, ref: VolumeRef, files: dict[str, dict]) -> None:
    store.write_bytes(ref, MANIFEST_NAME, manifest_text(files).encode())


def plan_sync(entries: list[FileEntry], manifest: dict[str, dict], listing: dict[str, int]):
    """(to_upload, to_skip): skip only when manifest SHA256 and listed size both match."""
    upload, skip = [], []
    for e in entries:
        known = manifest.get(e.rel)
        same = known is not None and known.get("sha256") == e.sha256 and listing.get(e.rel) == e.size
        (skip if same else upload).append(e)
    return upload, skip


def _verify(store: VolumeStore, ref: VolumeRef, entries: list[FileEntry], mode: str) -> list[str]:
    listing = store.list(ref)
    bad = [f"{e.rel}: remote size {listing.get(e.rel)} != local {e.size}" for e in entries
           if listing.get(e.rel) != e.size]
    if mode == "hash":
        with tempfile.TemporaryDirectory(prefix="wmtp-verify-") as tmp:
            for e in entries:
                if listing.get(e.rel) != e.size:
                    continue
                dest = Path(tmp) / "blob"
                store.download_file(ref, e.rel, dest, e.size)
                if sha256_file(dest) != e.sha256:
                    bad.append(f"{e.rel}: remote SHA256 differs from local")
    if bad:
        raise SyncError(f"verification of {ref.url} failed: " + "; ".join(bad))
    return [e.rel for e in entries]


def sync_to_volume(
    store: VolumeStore,
    sources: Sequence[Path],
    target: VolumeRef,
    *,
    dry_run: bool = False,
    verify: str = "size",
    echo: Callable[[str], None] = print,
) -> SyncReport:
    """Upload changed files from `sources` to `target`; see module docstring."""
    if verify not in ("size", "hash"):
        raise ValueError(f"verify: expected 'size' or 'hash', got {verify!r}")
    entries = scan_sources(sources)
    listing = store.list(target)
    manifest = read_manifest(store, target, listing)
    upload, skip = plan_sync(entries, manifest, listing)
    report = SyncReport(target.url, [e.rel for e in upload], [e.rel for e in skip], dry_run=dry_run)
    for e in upload:
        echo(f"{'would upload' if dry_run else 'upload'} {e.rel} ({e.size} B)")
    echo(f"{len(upload)} to upload, {len(skip)} unchanged (skipped) -> {target.url}")
    if dry_run:
        return report
    pending, pending_bytes = 0, 0
    for e in upload:
        store.upload_file(e.local, target, e.rel)
        manifest[e.rel] = {"sha256": e.sha256, "size": e.size}
        report.bytes_uploaded += e.size
        pending, pending_bytes = pending + 1, pending_bytes + e.size
        if pending >= FLUSH_EVERY_FILES or pending_bytes >= FLUSH_EVERY_BYTES:
            write_manifest(store, target, manifest)  # resume point
            pending, pending_bytes = 0, 0
    report.verified = _verify(store, target, upload, verify)
    write_manifest(store, target, manifest)
    echo(f"verified {len(report.verified)} uploaded file(s) ({verify})")
    return report


def download_from_volume(
    store: VolumeStore,
    source: VolumeRef,
    dest: Path,
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    include: Callable[[str], bool] | None = None,
    expected_sha256: Mapping[str, str] | None = None,
) -> SyncReport:
    """Download every file under `source` into `dest`, skipping local files whose SHA256 matches the manifest
    and checking each downloaded file against the manifest SHA256 when it has one.

    `include(rel)` limits the download to some files. `expected_sha256` ({rel: SHA256}) gives the hashes to check
    against where the source has no manifest (e.g. a run's export, checked against the model's metadata.json);
    every file it names must be listed under `source`."""
    listing = store.list(source)
    manifest = read_manifest(store, source, listing)
    known = {**{rel: e.get("sha256") for rel, e in manifest.items()}, **(expected_sha256 or {})}
    absent = sorted(set(expected_sha256 or {}) - set(listing))
    if absent:
        raise SyncError(f"{source.url}: expected file(s) not on the volume: {', '.join(absent)}")
    report = SyncReport(source.url, dry_run=dry_run)
    for rel, size in sorted(listing.items()):
        if rel == MANIFEST_NAME or (include is not None and not include(rel)):
            continue
        local = dest / rel
        expected = known.get(rel)
        if expected and local.is_file() and local.stat().st_size == size and sha256_file(local) == expected:
            report.skipped.append(rel)
            continue
        echo(f"{'would download' if dry_run else 'download'} {rel} ({size} B)")
        report.uploaded.append(rel)
        if dry_run:
            continue
        store.download_file(source, rel, local, size)
        if expected and sha256_file(local) != expected:
            raise SyncError(f"{local}: SHA256 differs from the expected {expected} of {source.url}/{rel}")
        if expected:
            report.verified.append(rel)
    echo(f"{len(report.uploaded)} downloaded, {len(report.skipped)} unchanged <- {source.url}")
    return report


__all__ = ["SyncError", "SyncReport", "FileEntry", "sync_to_volume", "download_from_volume", "scan_sources",
           "MANIFEST_NAME"]
