"""storage/datasets/manifest.json: SHA256, byte size and row count of every dataset file; verify mode."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from wmtp_core.data.errors import DatasetError
from wmtp_core.data.frames import frame_errors, manifest_files_schema
from wmtp_core.data.layout import MANIFEST_NAME, SourceLayout, display_path
from wmtp_core.data.reference_flags import flags_file
from wmtp_core.io import atomic_write_text, sha256_file

MANIFEST_VERSION = 1


def file_entry(path: Path) -> dict:
    """sha256, byte size and line count (a last line without a newline counts)."""
    data = path.read_bytes()
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return {"sha256": hashlib.sha256(data).hexdigest(), "rows": lines, "bytes": len(data)}


def dataset_files(datasets_root: Path, sources: list[str]) -> list[Path]:
    """Shipped source files, raw_extra inputs, raw, processed, processed_incorrect and rejects of each source."""
    files: list[Path] = []
    for source in sources:
        layout = SourceLayout(datasets_root, source)
        if layout.source_dir.is_dir():
            files += sorted(p for p in layout.source_dir.iterdir() if p.is_file())
        files += layout.raw_extra_inputs()  # extra raw rows + their sidecars (inputs, like source/)
        files += layout.output_files() + [layout.rejects_file]
        flags = flags_file(layout)
        files += [flags] if flags.is_file() else []
    return files


def build_manifest(
    datasets_root: Path, sources: list[str], tokenizer_model: Path, max_tokens: int, counts: dict
) -> dict:
    files = {}
    for path in dataset_files(datasets_root, sources):
        if not path.is_file():
            raise DatasetError(f"{display_path(path)}: required file not found (run `wmtp prepare-data`)")
        files[path.relative_to(datasets_root).as_posix()] = file_entry(path)
    return {
        "version": MANIFEST_VERSION,
        "sources": list(sources),
        "tokenizer": {"file": Path(tokenizer_model).name, "sha256": sha256_file(Path(tokenizer_model))},
        "max_tokens": max_tokens,
        "counts": counts,
        "files": files,
    }


def manifest_errors(manifest: dict, file: str) -> list[str]:
    rows = [{"path": p, **entry} for p, entry in manifest.get("files", {}).items()]
    return [str(e) for e in frame_errors(manifest_files_schema(), rows, list(range(1, len(rows) + 1)), file)]


def write_manifest(datasets_root: Path, manifest: dict) -> tuple[Path, str]:
    """Write atomically; returns (path, sha256 of the written file)."""
    path = datasets_root / MANIFEST_NAME
    errors = manifest_errors(manifest, display_path(path))
    if errors:
        raise DatasetError("manifest failed its schema:\n" + "\n".join(errors))
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path, sha256_file(path)


def read_manifest(datasets_root: Path) -> dict:
    path = datasets_root / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{display_path(path)}: not found (run `wmtp validate-datasets` first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{display_path(path)}: unreadable manifest: {err}") from err


def verify_manifest(datasets_root: Path, recorded: dict, fresh: dict) -> list[str]:
    """Differences between the recorded manifest and one recomputed now (empty when they agree)."""
    where = display_path(datasets_root / MANIFEST_NAME)
    errors = manifest_errors(recorded, where)
    old, new = recorded.get("files", {}), fresh["files"]
    for rel in sorted(set(old) | set(new)):
        if rel not in new:
            errors.append(f"{where}: {rel}: recorded but no longer produced")
        elif rel not in old:
            errors.append(f"{where}: {rel}: present now but not recorded")
        else:
            errors += [
                f"{where}: {rel}: {k} differs (recorded {old[rel].get(k)!r}, now {new[rel][k]!r})"
                for k in ("sha256", "rows", "bytes")
                if old[rel].get(k) != new[rel][k]
            ]
    for key in ("tokenizer", "max_tokens"):
        if recorded.get(key) != fresh[key]:
            errors.append(f"{where}: {key} differs (recorded {recorded.get(key)!r}, now {fresh[key]!r})")
    return errors
