"""`wmtp label`: execute generated samples and write raw-schema rows with is_correct (critic training data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wmtp_core.cli.sandbox_gate import add_allow_unisolated, refuse_without_isolation

DATASETS = ("humaneval", "mbpp", "codecontests")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("label", help="label samples.jsonl / results.jsonl by execution -> raw rows")
    p.add_argument("--samples", type=Path, required=True,
                   help="samples.jsonl from `wmtp eval` (executed here) or results.jsonl (verdicts reused)")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--out", type=Path, required=True, help="raw-schema JSONL to write")
    p.add_argument("--workers", type=int, default=2, help="parallel sandboxes")
    add_allow_unisolated(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    refused = refuse_without_isolation(args, "wmtp label")
    return refused if refused is not None else _run(args)


def _run(args: argparse.Namespace) -> int:
    from wmtp_core.eval.label import label_samples

    report = label_samples(args.samples, args.dataset, args.out, workers=args.workers)
    print(f"wrote {report.out_path}: {report.n_rows} rows ({report.n_correct} correct, "
          f"{report.n_rows - report.n_correct} incorrect)")
    for reason, count in sorted(report.skipped.items()):
        print(f"skipped {count}: {reason}")
    return 0
