"""`wmtp export-mlflow --run-id ID --out DIR`: params, metric CSVs, artifacts and loss curves of a run tree."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export-mlflow", help="export an MLflow run and its nested runs to files")
    p.add_argument("--run-id", required=True, help="MLflow run id (e.g. the flow's parent run)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--tracking-uri", default=None,
                   help="default: $MLFLOW_TRACKING_URI, else sqlite:///storage/mlflow/mlflow.db")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from wmtp_core.export_mlflow import export_run
    from wmtp_core.secrets import redact

    try:
        report = export_run(args.run_id, args.out, args.tracking_uri)
    except MlflowException as exc:
        print(f"wmtp export-mlflow: run {args.run_id}: {redact(exc.message)}")
        return 2
    for run in report.runs:
        print(f"{run['folder']}: {run['run_name']} ({run['status']}), {len(run['metrics'])} metric(s)")
    print(f"exported {len(report.runs)} run(s), {report.files} file(s) -> {report.out_dir}")
    return 0
