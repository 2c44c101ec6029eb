"""`.wmtp-manifest.json`, version 1: {"version": 1, "files": {rel: {"sha256", "size"}}}.

One reader and one writer for the record an upload target keeps, whether the target is a VESSL Storage volume
(`wmtp_core.vessl_client.sync`) or a local directory standing in for one (`wmtp_core.upload`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

MANIFEST_NAME = ".wmtp-manifest.json"
MANIFEST_VERSION = 1


def parse_manifest(raw: bytes, where: str, error: Callable[[str], BaseException]) -> dict[str, dict]:
    """The files mapping of a version-1 manifest held in `raw`; `error(message)` (naming `where`) otherwise."""
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{where}: unreadable manifest ({exc})") from None
    return manifest_files(data, where, error)


def manifest_files(data: Any, where: str, error: Callable[[str], BaseException]) -> dict[str, dict]:
    """The files mapping of a parsed version-1 manifest; `error(message)` (naming `where`) for anything else."""
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or not isinstance(files, dict):
        raise error(f"{where}: field version/files: expected version {MANIFEST_VERSION} and a files mapping")
    return files


def manifest_text(files: dict[str, dict]) -> str:
    """The manifest document for `files`, keys sorted."""
    return json.dumps({"version": MANIFEST_VERSION, "files": files}, indent=2, sort_keys=True) + "\n"
