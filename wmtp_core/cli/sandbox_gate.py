"""The sandbox gate shared by the subcommands that run candidate programs (`wmtp eval`, `wmtp label`)."""

from __future__ import annotations

import argparse
import sys


def add_allow_unisolated(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-unisolated", action="store_true",
                   help="run candidate programs even where the sandbox cannot give them a private filesystem "
                        "view (they can then read every world-readable file; results name the mode)")


def refuse_without_isolation(args: argparse.Namespace, prog: str) -> int | None:
    """2 (after saying why) when the sandbox cannot isolate programs here and the user did not allow that; else
    None. Runs before any generation: refuse early, never after an hour of decoding."""
    from wmtp_core.eval.sandbox import detect_isolation
    from wmtp_core.eval.sandbox_isolation import SandboxUnavailable, allow_unisolated

    if args.allow_unisolated:
        allow_unisolated()
    try:
        detect_isolation()
    except SandboxUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return None
