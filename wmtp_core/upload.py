"""Upload run artifacts to a storage target with a SHA256 manifest.

Targets:
- a local directory (a mounted volume, or a stand-in for one): files land at `<target>/<source basename>/<rel>`,
  and `<target>/.wmtp-manifest.json` records {"version": 1, "files": {rel: {"sha256", "size"}}} — the same layout
  and manifest the VESSL Storage sync writes, so either target can be fetched back the same way;
- `volume://<storage>/<volume>[/path]`: VESSL Storage through `wmtp_core.vessl_client.sync.sync_to_volume`
  (credentials from `.env.vessl` / the environment).

A file whose SHA256 already matches the manifest (and which is present with that size) is skipped; every copied
file is hashed again at the destination; the manifest is rewritten atomically after each file, so an interrupted
upload resumes where it stopped.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wmtp_core.io import atomic_output, atomic_write_text, read_json, sha256_file
from wmtp_core.vessl_client.manifest import MANIFEST_NAME, manifest_files, manifest_text
from wmtp_core.vessl_client.sync import FileEntry, scan_sources


class UploadError(RuntimeError):
    """The target is unusable or a copied file does not match its source SHA256."""


@dataclass
class UploadReport:
    target: str
    manifest_path: Path | None  # local manifest (local targets) or None for volumes
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    sha256: dict[str, str] = field(default_factory=dict)  # rel -> SHA256 of every file in this upload


def is_volume(target: str) -> bool:
    return target.startswith("volume://")


def upload_artifacts(sources: Sequence[Path], target: str, echo: Callable[[str], None] = print,
                     env_file: Path | None = None) -> UploadReport:
    """Upload every file under `sources` to `target` (a local directory or volume:// URI)."""
    entries = scan_sources([Path(s) for s in sources])
    if is_volume(target):
        return _upload_volume(sources, target, entries, echo, env_file)
    return _upload_local(entries, Path(target), echo)


def read_local_manifest(root: Path) -> dict[str, dict]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        return {}
    return manifest_files(read_json(path, UploadError, expect=dict), str(path), UploadError)


def _unchanged(root: Path, entry: FileEntry, manifest: dict[str, dict]) -> bool:
    known = manifest.get(entry.rel, {})
    dest = root / entry.rel
    return known.get("sha256") == entry.sha256 and dest.is_file() and dest.stat().st_size == entry.size


def _copy_verified(entry: FileEntry, dest: Path) -> None:
    with atomic_output(dest) as tmp:
        shutil.copyfile(entry.local, tmp)
        if sha256_file(tmp) != entry.sha256:
            raise UploadError(f"{dest}: SHA256 after copy differs from {entry.local} (source changed while copying?)")


def _upload_local(entries: list[FileEntry], root: Path, echo: Callable[[str], None]) -> UploadReport:
    if root.exists() and not root.is_dir():
        raise UploadError(f"{root}: upload target exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    manifest = read_local_manifest(root)
    report = UploadReport(str(root), root / MANIFEST_NAME, sha256={e.rel: e.sha256 for e in entries})
    for entry in entries:
        if _unchanged(root, entry, manifest):
            report.skipped.append(entry.rel)
            continue
        _copy_verified(entry, root / entry.rel)
        manifest[entry.rel] = {"sha256": entry.sha256, "size": entry.size}
        atomic_write_text(root / MANIFEST_NAME, manifest_text(manifest))
        report.uploaded.append(entry.rel)
        report.bytes_uploaded += entry.size
    if not (root / MANIFEST_NAME).is_file():
        atomic_write_text(root / MANIFEST_NAME, manifest_text(manifest))
    echo(f"{len(report.uploaded)} uploaded, {len(report.skipped)} unchanged (skipped) -> {root}")
    return report


def _upload_volume(sources: Sequence[Path], target: str, entries: list[FileEntry], echo: Callable[[str], None],
                   env_file: Path | None) -> UploadReport:
    from wmtp_core.vessl_client.settings import load_settings
    from wmtp_core.vessl_client.storage import VolumeRef, VolumeStore
    from wmtp_core.vessl_client.sync import sync_to_volume

    sync = sync_to_volume(VolumeStore(load_settings(env_file)), [Path(s) for s in sources],
                          VolumeRef.parse(target), verify="hash", echo=echo)
    return UploadReport(sync.target, None, list(sync.uploaded), list(sync.skipped), sync.bytes_uploaded,
                        {e.rel: e.sha256 for e in entries})
