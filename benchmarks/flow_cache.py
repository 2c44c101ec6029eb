"""Cold vs cached `flows/local.py`: prints JSON with both wall times, their ratio and what re-ran.

Runs `uv run python flows/local.py` twice, each in its own process, against a fresh copy of the shipped inputs
(every file git tracks under storage/: dataset sources, shipped negatives, tokenizers) in a temporary
WMTP_STORAGE, with a fresh PREFECT_HOME, result store and MLflow store — so the first run is what a fresh clone sees and the second is an identical rerun. `--rounds` repeats
that pair in fresh directories; wall times and the ratio are the median and range over rounds (the ratio taken
within each round), with the machine's load before and after.
Targets: first run <= 600 s for all three experiments on the 2-core CPU; re-executed convert/validate/build = 0;
second/first <= 0.5.

    uv run python benchmarks/flow_cache.py [--experiment all] [--rounds 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rounds import load_now, load_report, spread  # noqa: E402

REUSABLE = ("convert-checkpoint", "prepare-validate-datasets", "build-micro")


def fresh_storage(root: Path) -> Path:
    """The storage/ of a fresh clone: every file git tracks under it (sources, shipped negatives, tokenizers)."""
    listed = subprocess.run(["git", "ls-files", "-z", "storage"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    return root / "storage"


def run_once(env: dict[str, str], summary: Path, experiment: str, log: Path) -> float:
    cmd = [sys.executable, str(REPO / "flows" / "local.py"), "--experiment", experiment, "--summary-json",
           str(summary)]
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"flows/local.py failed ({done.returncode}); log: {log}\n" + log.read_text()[-3000:])
    return wall


def executed(summary: Path) -> dict[str, list[str]]:
    data = json.loads(summary.read_text())
    return {e["experiment"]: [s["step"] for s in e["steps"] if s["state"] == "Completed"]
            for e in data["experiments"]}


def one_round(root: Path, experiment: str) -> dict:
    """A cold run and an identical rerun against fresh stores under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    storage = fresh_storage(root)
    env = {**os.environ, "WMTP_STORAGE": str(storage), "PREFECT_HOME": str(root / "prefect-home"),
           "PREFECT_LOCAL_STORAGE_PATH": str(root / "prefect-results"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"}
    (root / "mlflow").mkdir(exist_ok=True)
    first = run_once(env, root / "first.json", experiment, root / "first.log")
    second = run_once(env, root / "second.json", experiment, root / "second.log")
    rerun = executed(root / "second.json")
    return {"first": first, "second": second, "executed_first": sum(len(v) for v in executed(root / "first.json").values()),
            "rerun": rerun, "reusable_rerun": sum(step in REUSABLE for steps in rerun.values() for step in steps)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--experiment", default="all")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    root = args.keep or Path(tempfile.mkdtemp(prefix="wmtp-flow-cache-"))
    before = load_now()
    rounds = [one_round(root / f"round-{i}", args.experiment) for i in range(args.rounds)]
    machine = load_report(before, load_now())
    print(json.dumps({
        "experiments": args.experiment, "first_run_wall_s": spread([r["first"] for r in rounds], 1),
        "second_run_wall_s": spread([r["second"] for r in rounds], 1),
        "ratio_second_over_first": spread([r["second"] / r["first"] for r in rounds]),
        "tasks_executed_first_run": [r["executed_first"] for r in rounds],
        "tasks_reexecuted_second_run": [sum(len(v) for v in r["rerun"].values()) for r in rounds],
        "reexecuted_convert_validate_build": max(r["reusable_rerun"] for r in rounds),
        "reexecuted_by_experiment": rounds[-1]["rerun"],
        "targets": {"first_run_wall_s": 600, "reexecuted_convert_validate_build": 0, "ratio_second_over_first": 0.5},
        "machine": machine, "work_dir": str(root) if args.keep else None,
    }, indent=2))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
