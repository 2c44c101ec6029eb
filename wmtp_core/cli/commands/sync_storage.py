"""`wmtp sync-storage SRC... --to volume://...` and `wmtp fetch-storage volume://... --to DIR` (VESSL Storage)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("sync-storage", help="upload directories to a VESSL Storage volume (SHA256 manifest)")
    up.add_argument("sources", nargs="+", type=Path, help="local files/directories, e.g. storage/models")
    up.add_argument("--to", required=True, dest="target", help="volume://<storage>/<volume>[/path]")
    up.add_argument("--dry-run", action="store_true", help="print the plan, upload nothing")
    up.add_argument("--verify", choices=("size", "hash"), default="size",
                    help="after upload check sizes in the listing, or download and compare SHA256")
    up.add_argument("--env-file", type=Path, default=None, help="default: .env.vessl at the repo root")
    up.set_defaults(func=lambda a: _guarded(_sync, a))

    down = subparsers.add_parser("fetch-storage", help="download a VESSL Storage volume path (verifies SHA256)")
    down.add_argument("source", help="volume://<storage>/<volume>[/path]")
    down.add_argument("--to", required=True, dest="dest", type=Path, help="local directory")
    down.add_argument("--dry-run", action="store_true")
    down.add_argument("--env-file", type=Path, default=None)
    down.set_defaults(func=lambda a: _guarded(_fetch, a))


def _guarded(fn, args: argparse.Namespace) -> int:
    """Expected failures (bad config, missing source, API gave up, verification) -> one redacted line, exit 2."""
    from wmtp_core.secrets import EnvFileError, redact
    from wmtp_core.vessl_client.retry import VesslApiError
    from wmtp_core.vessl_client.sync import SyncError

    try:
        return fn(args)
    except (ValueError, FileNotFoundError, EnvFileError, VesslApiError, SyncError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2


def _store(env_file: Path | None):
    from wmtp_core.vessl_client.settings import load_settings
    from wmtp_core.vessl_client.storage import VolumeStore

    return VolumeStore(load_settings(env_file))


def _sync(args: argparse.Namespace) -> int:
    from wmtp_core.secrets import redact
    from wmtp_core.vessl_client.storage import VolumeRef
    from wmtp_core.vessl_client.sync import sync_to_volume

    report = sync_to_volume(_store(args.env_file), args.sources, VolumeRef.parse(args.target),
                            dry_run=args.dry_run, verify=args.verify)
    print(redact(json.dumps(report.to_dict())))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from wmtp_core.secrets import redact
    from wmtp_core.vessl_client.storage import VolumeRef
    from wmtp_core.vessl_client.sync import download_from_volume

    report = download_from_volume(_store(args.env_file), VolumeRef.parse(args.source), args.dest,
                                  dry_run=args.dry_run)
    print(redact(json.dumps(report.to_dict())))
    return 0
