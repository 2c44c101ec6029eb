"""`wmtp prepare-data`: shipped sources -> raw -> processed splits + small sets (counts per split printed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmtp_core import paths


def parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}") from err
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {len(values)}")
    return values  # type: ignore[return-value]


def parse_sources(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prepare-data", help="build raw/processed datasets, splits and small sets")
    p.add_argument("--datasets-root", type=Path, default=paths.DATASETS_ROOT)
    p.add_argument(
        "--sources",
        type=parse_sources,
        default=("codecontests", "mbpp", "humaneval"),
        help="comma list of codecontests,mbpp,humaneval",
    )
    p.add_argument(
        "--tokenizer", type=Path, default=paths.CODE_TOKENIZER, help="SentencePiece model for lengths"
    )
    p.add_argument("--max-tokens", type=int, default=2048, help="BOS + prompt + code + EOS budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ratios", type=parse_ratios, default=(0.8, 0.1, 0.1), help="train,validation,test")
    p.add_argument(
        "--allow-truncation", action="store_true", help="cut code that cannot fit instead of rejecting"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any raw_extra/ row (user-added) is rejected (the flow always prepares strictly)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wmtp_core.data.api import PrepareSettings, check_strict, run_prepare
    from wmtp_core.data.errors import DatasetError
    from wmtp_core.data.layout import SourceLayout, display_path
    from wmtp_core.data.report import format_prepare

    try:
        settings = PrepareSettings(
            sources=args.sources,
            tokenizer_model=str(args.tokenizer),
            max_tokens=args.max_tokens,
            seed=args.seed,
            ratios=args.ratios,
            allow_truncation=args.allow_truncation,
        )
        reports = run_prepare(args.datasets_root, settings)
    except (DatasetError, ValueError, FileNotFoundError) as err:
        print(f"prepare-data: error: {err}", file=sys.stderr)
        return 2
    for report in reports:
        rejects = display_path(SourceLayout(args.datasets_root, report.source).rejects_file)
        print("\n".join(format_prepare(report, rejects)))
    if args.strict:
        try:
            check_strict(reports)
        except DatasetError as err:
            print(f"prepare-data: error: {err}", file=sys.stderr)
            return 1
    return 0
