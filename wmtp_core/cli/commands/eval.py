"""`wmtp eval`: pass@k of a model dir on HumanEval / MBPP / CodeContests, or a check of the reference solutions."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wmtp_core import paths
from wmtp_core.cli.sandbox_gate import add_allow_unisolated, refuse_without_isolation

DATASETS = ("humaneval", "mbpp", "codecontests")


def _ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--k {text!r}: expected comma-separated integers like 1,10") from exc
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"--k {text!r}: every k must be >= 1")
    return ks


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="sandboxed pass@k of a model (or --check-references)")
    p.add_argument("--model", type=Path, help="model dir (loadable by MetaLlamaMTPAdapter.from_pretrained)")
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--n", type=int, default=10, help="samples per problem")
    p.add_argument("--k", type=_ks, default=[1, 10], help="comma-separated k values for pass@k")
    p.add_argument("--limit", type=int, default=None, help="first N reliable problems only")
    p.add_argument("--out", type=Path, default=None, help="output dir (default storage/runs/eval/<name>)")
    p.add_argument("--temperature", type=float, default=None, help="default: 0 (greedy) when n=1, else 0.8")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2, help="parallel sandboxes")
    p.add_argument("--batch-size", type=int, default=16, help="samples decoded together")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is much faster than the default on a busy shared machine)")
    p.add_argument("--speculative", action=argparse.BooleanOptionalAction, default=None,
                   help="self-speculative greedy decoding with the MTP heads (default: on when decoding greedily "
                        "a model with extra heads; --no-speculative turns it off)")
    p.add_argument("--draft-len", type=int, default=None,
                   help="most drafts per speculative step, 1..n_future-1 (default n_future-1, adaptive)")
    p.add_argument("--check-references", action="store_true",
                   help="run the dataset's reference solutions instead of a model; for codecontests this "
                        "(re)writes storage/datasets/codecontests/unreliable.json")
    add_allow_unisolated(p)
    p.set_defaults(func=run)


def _check_references(args: argparse.Namespace) -> int:
    from wmtp_core.eval.problems import load_problems
    from wmtp_core.eval.reliability import check_references, flags_from_results, write_unreliable

    problems = load_problems(args.dataset, args.limit)
    results = check_references(problems, workers=args.workers)
    flags = flags_from_results(results)
    for task_id, flag in flags.items():
        print(f"{task_id}: {flag['status']} ({flag['tests_passed']}/{flag['tests_total']}) {flag['detail'][-160:]!r}")
    print(f"{args.dataset}: {len(problems) - len(flags)}/{len(problems)} reference solutions pass")
    if args.dataset == "codecontests":
        if args.limit is not None:
            print("not writing unreliable.json for a --limit run")
        else:
            print(f"wrote {write_unreliable(flags, len(problems), None)}")
    return 0


def run(args: argparse.Namespace) -> int:
    refused = refuse_without_isolation(args, "wmtp eval")
    return refused if refused is not None else _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.check_references:
        return _check_references(args)
    if args.model is None:
        raise SystemExit("wmtp eval: --model is required (or use --check-references)")
    from wmtp_core.artifacts.errors import ArtifactError
    from wmtp_core.eval.harness import evaluate

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    temperature = args.temperature if args.temperature is not None else (0.0 if args.n == 1 else 0.8)
    out = args.out or paths.RUNS_ROOT / "eval" / f"{args.model.name}-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = evaluate(args.model, args.dataset, args.n, args.k, args.limit, out, temperature=temperature,
                          max_new_tokens=args.max_new_tokens, seed=args.seed, device=args.device,
                          speculative=args.speculative, top_p=args.top_p, workers=args.workers,
                          batch_size=args.batch_size, draft_len=args.draft_len)
    except (ArtifactError, FileNotFoundError) as exc:  # a corrupted, incomplete or missing model dir
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), indent=2))
    return 0
