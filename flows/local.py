"""Run the whole WMTP DAG locally: `uv run python flows/local.py`.

All three experiments (or `--experiment NAME`) on the embedded default: the shipped small datasets, a micro model
built from the real base when one is converted at storage/models/meta-llama-mtp (else from a synthetic base, with
a notice), the `smoke` preset, local-process training, a 4-problem MBPP eval, and an upload to a local directory
standing in for a volume. Prefect runs ephemerally (no server needed); task results persist under storage/prefect,
so a second identical run reuses convert / validate / build (and unchanged training) and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REUSABLE = ("convert-checkpoint", "prepare-validate-datasets", "build-micro")
# The local smoke run trains on the shipped small MBPP set, whose examples all fit in 640 tokens; the CodeContests
# rows run to ~2050 tokens (p50 ~880) and make a CPU step minutes long. For the full mix pass
# `--set data.sources=[codecontests,mbpp] --set data.max_len=2048`.
DEFAULT_OVERRIDES = ["data.sources=[mbpp]", "data.max_len=640"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="flows/local.py", description=__doc__.split("\n\n")[0])
    from wmtp_core.experiments import EXPERIMENTS

    p.add_argument("--experiment", choices=(*EXPERIMENTS, "all"), default="all")
    p.add_argument("--preset", default="smoke", help="configs/presets/<name>.yaml (default: smoke)")
    p.add_argument("--base-checkpoint", default=None,
                   help="Meta-format checkpoint dir (consolidated.pth, params.json, tokenizer.model) or a converted "
                        "model dir; default: storage/models/meta-llama-mtp if converted, else a synthetic base")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps", "auto"))
    p.add_argument("--micro-plan", default="default", choices=("default", "tiny"))
    p.add_argument("--eval-limit", type=int, default=4, help="problems evaluated per experiment")
    p.add_argument("--eval-temperature", type=float, default=0.2,
                   help="eval sampling temperature (default 0.2; 0: greedy, decoded self-speculatively when the "
                        "model has extra heads)")
    p.add_argument("--no-speculative", dest="eval_speculative", action="store_false",
                   help="greedy eval without self-speculative decoding")
    p.add_argument("--seeds", type=int, default=1,
                   help="training seeds per experiment (default 1: the config's seed; N > 1: run.seed = 0..N-1); "
                        "the comparison pools them in its bootstrap CIs")
    p.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                   help="`wmtp train --set` override for every stage (repeatable; default: "
                        "data.sources=[mbpp] data.max_len=640, the shipped small MBPP set, which fits)")
    p.add_argument("--summary-json", type=Path, default=None, help="also write the step states and wall time here")
    p.add_argument("--upload-target", default=None,
                   help="directory or volume://… (default: storage/runs/_volume, a local stand-in for a volume)")
    return p.parse_args(argv)


def configure_prefect() -> None:
    """Ephemeral Prefect on a busy laptop: allow a slow first server start; no telemetry."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


def cache_report(summaries: list) -> list[str]:
    from flows.report import run_label

    lines = []
    for s in summaries:
        states = {r.step: r.state for r in s.steps}
        reused = [step for step in REUSABLE if states.get(step) == "Cached"]
        ran = [r.step for r in s.steps if r.state == "Completed"]
        cached = [r.step for r in s.steps if r.state == "Cached"]
        lines.append(f"  {run_label(s)}: cached {len(cached)} step(s) {cached}; ran {ran}")
        if reused:
            lines.append(f"    cache hit for {', '.join(reused)} (inputs unchanged since an earlier run)")
    return lines


def ui_help(tracking_uri: str) -> str:
    from wmtp_core.secrets import redact

    home = os.environ.get("PREFECT_HOME", "~/.prefect")
    store = redact(tracking_uri) if not tracking_uri.startswith("sqlite") else f"'{tracking_uri}'"
    return "\n".join([
        "Prefect UI (the flow runs above are in the local Prefect database under " + home + "):",
        "  uv run prefect server start        # then open http://127.0.0.1:4200",
        "MLflow UI:",
        f"  uv run mlflow ui --backend-store-uri {store}        # then open http://127.0.0.1:5000",
        "Provenance of a trained model:",
        "  uv run wmtp provenance storage/runs/<run>/model",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_prefect()
    from flows.layout import LOCAL_VOLUME
    from flows.report import comparison_rows, console_table, run_rows, steps_table
    from flows.request import CompareRequest
    from flows.wmtp import wmtp_compare
    from wmtp_core.experiments import EXPERIMENTS
    from wmtp_core.tracking.mlflow_backend import resolve_tracking_uri

    experiments = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    upload = args.upload_target or LOCAL_VOLUME
    started = time.perf_counter()
    summaries = wmtp_compare(CompareRequest(
        experiments=experiments, seeds=args.seeds, preset=args.preset, base_checkpoint=args.base_checkpoint,
        device=args.device, eval_limit=args.eval_limit, eval_temperature=args.eval_temperature,
        eval_speculative=args.eval_speculative, upload_target=upload, micro_plan=args.micro_plan,
        train_overrides=args.overrides or DEFAULT_OVERRIDES))
    wall = time.perf_counter() - started
    print("\n=== WMTP comparison ===")
    print(console_table(comparison_rows(summaries)))
    print("pass@k: mean over problems (and seeds) [bootstrap 95% CI over problems, seeds resampled too]; "
          "Δ: paired difference to baseline on the same resampled problems; 'not significant': its CI contains 0")
    print("\n=== Runs ===")
    print(console_table(run_rows(summaries)))
    print("\n=== Steps ===")
    print(steps_table(summaries))
    print("\n=== Cache ===")
    print("\n".join(cache_report(summaries)))
    print(f"\nwall time: {wall:.1f} s for {len(summaries)} run(s) ({len(experiments)} experiment(s) x {args.seeds} "
          f"seed(s)); artifacts uploaded to {summaries[0].upload_target}\n")
    print(ui_help(resolve_tracking_uri(None)))
    if args.summary_json:
        write_summary(args.summary_json, summaries, wall)
    return 0


def write_summary(path: Path, summaries: list, wall: float) -> None:
    from wmtp_core.io import atomic_write_json

    atomic_write_json(path, {"wall_s": wall, "experiments": [
        {"experiment": s.experiment, "seed": s.seed, "flow_run_id": s.flow_run_id, "mlflow_parent_run_id": s.mlflow_parent_run_id,
         "pass_at_k": s.pass_at_k, "steps": [{"step": r.step, "state": r.state} for r in s.steps]}
        for s in summaries]})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
