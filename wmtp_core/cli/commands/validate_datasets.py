"""`wmtp validate-datasets`: schemas, token lengths, duplicates, leakage; writes or verifies manifest.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmtp_core import paths
from wmtp_core.cli.commands.prepare_data import parse_sources


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("validate-datasets", help="validate prepared datasets and write manifest.json")
    p.add_argument("--datasets-root", type=Path, default=paths.DATASETS_ROOT)
    p.add_argument(
        "--sources", type=parse_sources, default=None, help="default: those of the last prepare-data"
    )
    p.add_argument("--tokenizer", type=Path, default=None, help="default: the one the last prepare-data used")
    p.add_argument("--max-tokens", type=int, default=None, help="default: that of the last prepare-data")
    p.add_argument(
        "--verify", action="store_true", help="recompute and compare with the recorded manifest.json"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wmtp_core.data.api import PrepareSettings, load_settings, run_validate
    from wmtp_core.data.errors import DatasetError
    from wmtp_core.data.report import format_counts

    overrides = {
        "sources": args.sources,
        "tokenizer_model": args.tokenizer and str(args.tokenizer),
        "max_tokens": args.max_tokens,
    }
    try:
        settings = load_settings(args.datasets_root) or PrepareSettings()
        settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        report, manifest, digest = run_validate(args.datasets_root, settings, verify=args.verify)
    except (DatasetError, FileNotFoundError) as err:
        print(f"validate-datasets: error: {err}", file=sys.stderr)
        return 2
    print("\n".join(format_counts(report.counts)))
    for line in report.errors:
        print(line, file=sys.stderr)
    if not report.ok:
        print(f"validate-datasets: {len(report.errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"manifest verified: {manifest}" if args.verify else f"wrote {manifest} sha256={digest}")
    return 0
