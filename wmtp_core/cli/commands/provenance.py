"""`wmtp provenance PATH`: print what produced an artifact, back to the source checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("provenance", help="print the provenance chain of a model or run directory")
    p.add_argument("path", type=Path, help="a model dir, a run dir (storage/runs/<name>) or a file inside one")
    p.add_argument("--json", action="store_true", help="print the chain as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from wmtp_core.provenance import chain, format_chain

    try:
        entries = chain(args.path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"wmtp provenance: {exc}")
        return 2
    print(json.dumps(entries, indent=2) if args.json else format_chain(entries))
    return 0
