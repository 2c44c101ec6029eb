"""`wmtp label`: execute generated samples and write raw-schema rows with is_correct (critic training data)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATASETS = ("humaneval", "mbpp", "codecontests")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("label", help="label samples.jsonl / results.jsonl by execution -> raw rows")
    p.add_argument("--samples", type=Path, required=True,
                   help="samples.jsonl from `wmtp eval` (executed here) or results.jsonl (verdicts reused)")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--out", type=Path, required=True, help="raw-schema JSONL to write")
    p.add_argument("--workers", type=int, default=2, help="parallel sandboxes")
    p.add_argument("--allow-unisolated", action="store_true",
                   help="run candidate programs even where the sandbox cannot give them a private filesystem "
                        "view (they can then read every world-readable file; results name the mode)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wmtp_core.eval.sandbox import detect_isolation
    from wmtp_core.eval.sandbox_isolation import SandboxUnavailable, allow_unisolated

    if args.allow_unisolated:
        allow_unisolated()
    try:
        detect_isolation()  # before any generation: refuse early, never after an hour of decoding
    except SandboxUnavailable as exc:
        print(f"wmtp label: {exc}", file=sys.stderr)
        return 2
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from wmtp_core.eval.label import label_samples

    report = label_samples(args.samples, args.dataset, args.out, workers=args.workers)
    print(f"wrote {report.out_path}: {report.n_rows} rows ({report.n_correct} correct, "
          f"{report.n_rows - report.n_correct} incorrect)")
    for reason, count in sorted(report.skipped.items()):
        print(f"skipped {count}: {reason}")
    return 0
