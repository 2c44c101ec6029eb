"""`wmtp make-negatives`: mutants of accepted solutions that run and fail their tests -> is_correct=false rows."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("make-negatives", help="verified incorrect solutions by mutating accepted ones")
    p.add_argument("--dataset", choices=("codecontests", "mbpp"), default="codecontests")
    p.add_argument("--out", type=Path, required=True,
                   help="raw-schema JSONL to write; mutations go to <out>.mutations.jsonl")
    p.add_argument("--per-problem", type=int, default=2, help="negatives kept per problem")
    p.add_argument("--max-tries", type=int, default=8, help="mutants executed per problem at most")
    p.add_argument("--limit", type=int, default=None, help="first N reliable problems only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="parallel sandboxes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wmtp_core.eval.harness import select_problems
    from wmtp_core.eval.negatives import make_negatives

    problems, excluded = select_problems(args.dataset, args.limit)
    report = make_negatives(problems, args.out, per_problem=args.per_problem, max_tries=args.max_tries,
                            seed=args.seed, workers=args.workers)
    print(f"wrote {report.out_path}: {report.n_rows} negatives from {len(problems)} problems "
          f"({len(excluded)} unreliable problems skipped); mutations in {report.sidecar_path}")
    print("kinds: " + ", ".join(f"{k}={v}" for k, v in sorted(report.kinds.items())))
    print("mutants not kept: " + ", ".join(f"{k}={v}" for k, v in sorted(report.rejected.items())))
    if report.problems_without_negative:
        print(f"no failing mutant found for {len(report.problems_without_negative)} problems: "
              + ", ".join(report.problems_without_negative[:20]))
    return 0
