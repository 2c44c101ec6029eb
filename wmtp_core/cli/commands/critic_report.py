"""`wmtp critic-report`: does a Stage 1 value head classify correct/incorrect rows and localise the first wrong
token? Scores the critic and the constant_critic / position_matched controls (docs/science.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("critic-report", help="classification / localisation AUROC of a value head and its "
                                                    "position-only controls -> <out>/reports/critic_report.json")
    p.add_argument("--model", type=Path, help="policy model dir (from_pretrained)")
    p.add_argument("--value-head", type=Path, help="value_head.safetensors of the same run")
    p.add_argument("--dataset", type=Path, default=None,
                   help="datasets root with <source>/processed{,_incorrect}/<split>.jsonl (default: storage/datasets)")
    p.add_argument("--sources", nargs="+", default=["codecontests", "mbpp"])
    p.add_argument("--split", default="validation")
    p.add_argument("--suffix", default=None, help="e.g. small -> validation_small.jsonl")
    p.add_argument("--max-len", type=int, default=2048)
    p.add_argument("--constant", type=float, default=None,
                   help="constant_critic's V (default: mean V over the scored rows' target tokens)")
    p.add_argument("--synthetic", action="store_true",
                   help="train a micro critic on the planted-signal world (CPU) and report on held-out problems")
    p.add_argument("--steps", type=int, default=None, help="--synthetic: Stage 1 steps")
    p.add_argument("--rule", choices=("identity", "prompt"), default="identity", help="--synthetic: world rule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="run output dir: writes <out>/reports/critic_report.json (default: the value head's dir)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wmtp_core.eval.critic_report import write_critic_report

    try:
        if args.synthetic:
            report, out = _synthetic(args)
        else:
            report, out = _real(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path = write_critic_report(report, out)
    print(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return 0


def _synthetic(args: argparse.Namespace) -> tuple[dict, Path]:
    from wmtp_core.eval.planted_run import PlantedSettings, planted_report

    if args.out is None:
        raise ValueError("--synthetic needs --out DIR")
    settings = PlantedSettings(seed=args.seed, rule=args.rule)
    if args.steps is not None:
        settings.steps = args.steps
    report, _ = planted_report(settings)
    return report, args.out


def _real(args: argparse.Namespace) -> tuple[dict, Path]:
    from wmtp_core import paths
    from wmtp_core.eval.critic_report import critic_report, load_report_rows
    from wmtp_core.model.adapter import MetaLlamaMTPAdapter
    from wmtp_core.model.value_head import ValueHead
    if args.model is None or args.value_head is None:
        raise ValueError("critic-report needs --model DIR and --value-head FILE (or --synthetic)")
    adapter = MetaLlamaMTPAdapter.from_pretrained(args.model)
    head = ValueHead.load(args.value_head)
    if head.dim != adapter.args.dim:
        raise ValueError(f"{args.value_head}: value head dim {head.dim} != model dim {adapter.args.dim} ({args.model})")
    root = args.dataset or paths.DATASETS_ROOT
    rows = load_report_rows(root, args.sources, args.split, args.suffix)
    split = f"{args.split}_{args.suffix}" if args.suffix else args.split
    report = critic_report(adapter.model.eval(), head.eval(), adapter.tokenizer, rows, _critic_config(args), split,
                           args.max_len, constant=args.constant, seed=args.seed)
    return report, args.out or args.value_head.parent


def _critic_config(args: argparse.Namespace):  # noqa: ANN202 (CriticConfig, imported lazily)
    """The run's verifiable.critic settings (gamma, rewards) from config.resolved.yaml next to the value head, else
    the defaults."""
    import yaml

    from wmtp_core.weighting.critic import CriticConfig

    resolved = args.value_head.parent / "config.resolved.yaml"
    if not resolved.is_file():
        return CriticConfig()
    data = yaml.safe_load(resolved.read_text(encoding="utf-8")) or {}
    return CriticConfig(**((data.get("verifiable") or {}).get("critic") or {}))
