"""`wmtp train`: run one experiment's stages from defaults + recipe (+ preset, + --set overrides)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train one experiment (baseline | verifiable | rho1)",
                              description="Train an experiment; writes <output_dir>/result.json at the end.")
    p.add_argument("--config", type=Path, default=Path("configs/defaults.yaml"), help="defaults YAML")
    p.add_argument("--job", default=None, metavar="JSON|PATH",
                   help="the whole job as TrainJob JSON (inline or a file); what the flow's blocks run")
    p.add_argument("--recipe", type=Path, default=None, help="experiment recipe YAML (required without --job)")
    p.add_argument("--preset", default=None, help="preset name (configs/presets/<name>.yaml) or YAML path")
    p.add_argument("--stages", default=None, metavar="STAGE[,STAGE]",
                   help="train only these of the experiment's stages, e.g. stage1 (default: all of them)")
    p.add_argument("--use-micro-model", action="store_true", help="train the micro model (wmtp build-micro)")
    p.add_argument("--dataset-suffix", default=None, help="dataset file suffix, e.g. 'small' -> train_small.jsonl")
    p.add_argument("--run-name", default=None, help="output dir name under run.output_root and MLflow run name")
    p.add_argument("--resume", default=None, metavar="PATH|auto",
                   help="checkpoint dir, or auto = newest intact one (every file is checked against its SHA256)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume even though training-relevant config keys differ from the checkpoint's")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"], help="override run.device")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (dotted key; YAML value); repeatable")
    p.add_argument("--no-mlflow", action="store_true", help="console logging only")
    p.set_defaults(func=main)


def job_for(args: argparse.Namespace):  # -> TrainJob (lazy import)
    """`--job` as given, else the flags as a TrainJob (the same contract either way)."""
    from wmtp_core.config import ConfigError
    from wmtp_core.train.job import TrainJob, job_from_args

    if args.job is not None:
        given = [flag for flag, value in (("--recipe", args.recipe), ("--preset", args.preset),
                                          ("--set", args.overrides), ("--run-name", args.run_name),
                                          ("--resume", args.resume), ("--stages", args.stages),
                                          ("--use-micro-model", args.use_micro_model),
                                          ("--dataset-suffix", args.dataset_suffix), ("--device", args.device),
                                          ("--no-mlflow", args.no_mlflow),
                                          ("--allow-config-change", args.allow_config_change)) if value]
        if given:
            raise ConfigError(f"--job: give the whole job in it, not also {', '.join(given)}")
        return TrainJob.parse(args.job)
    if args.recipe is None:
        raise ConfigError("one of --job or --recipe is required")
    return job_from_args(args)


def main(args: argparse.Namespace) -> int:
    from wmtp_core.artifacts.errors import ArtifactError
    from wmtp_core.config import ConfigError
    from wmtp_core.data.errors import DatasetError
    from wmtp_core.train.loop import NonFiniteError
    from wmtp_core.train.run import RunSetupError, run_training
    from wmtp_core.train.state import CheckpointError, CheckpointWriteError

    try:
        job = job_for(args)
        cfg = job.resolve()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_training(cfg, run_name=job.run_name, resume=job.resume,
                              allow_config_change=job.allow_config_change)
    except (NonFiniteError, RunSetupError, FileNotFoundError, ArtifactError, DatasetError, CheckpointError,
            CheckpointWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result.result_path)
    return 0
