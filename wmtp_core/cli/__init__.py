"""`wmtp` command line: one subcommand per module in `wmtp_core.cli.commands`.

Each command module defines `register(subparsers)`, which adds its parser and sets `func`
(a callable taking the parsed namespace and returning an exit code). Heavy imports stay inside
the command functions so `wmtp --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from wmtp_core.cli import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wmtp", description="Weighted multi-token-prediction pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from wmtp_core.tracking.mlflow_backend import TrackingError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TrackingError as exc:  # one line naming the redacted URI: no traceback, no credentials
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
