"""What the comparison reads from a run's files (wmtp_core.eval.compare does the statistics).

- Per-problem outcomes: the eval's results.jsonl (one scored sample per line: task_id, passed).
- Weight statistics: the training run's metrics.json ({stage: [per-step metrics]}), Stage 2's `weight_entropy`,
  `weight_ess`, `weight_last10_share` averaged over the steps that logged them.
- The critic report: `<run output dir>/reports/critic_report.json` (schema `wmtp.critic_report/v1`).
Absent statistics read as None ("n/a" in the table); a file that is there but malformed is an error naming the
file, the line or field, and the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wmtp_core.eval.compare import CRITIC_CONTROLS, CRITIC_SECTIONS, WEIGHT_METRICS, RunOutcome
from wmtp_core.eval.passk import pass_counts
from wmtp_core.io import read_json

CRITIC_SCHEMA = "wmtp.critic_report/v1"
CRITIC_REPORT = Path("reports") / "critic_report.json"


def read_problem_counts(results_path: str | Path) -> dict[str, tuple[int, int]]:
    """task_id -> (samples, samples that passed) from an eval results.jsonl."""
    path = Path(results_path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable eval results: {exc}") from exc
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
        if not isinstance(row, dict) or not isinstance(row.get("task_id"), str) \
                or not isinstance(row.get("passed"), bool):
            raise ValueError(f"{path}:{number}: a scored sample needs a string `task_id` and a boolean `passed`")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no scored samples")
    return pass_counts(rows)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_stage_means(metrics_path: str | Path, stage: str = "stage2",
                     names: Sequence[str] = WEIGHT_METRICS) -> dict[str, float | None]:
    """Mean over `stage`'s steps of each named metric (None where no step logged it or the file is absent)."""
    path = Path(metrics_path)
    if not path.is_file():
        return dict.fromkeys(names)
    history = read_json(path, expect=dict)
    rows = history.get(stage, [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: `{stage}` must be a list of per-step metric objects")
    out: dict[str, float | None] = {}
    for name in names:
        values = [r[name] for r in rows if name in r]
        bad = [v for v in values if not _number(v)]
        if bad:
            raise ValueError(f"{path}: `{stage}` metric `{name}` has a non-finite or non-numeric value {bad[0]!r}")
        out[name] = sum(values) / len(values) if values else None
    return out


def read_critic_report(path: str | Path) -> dict[str, dict[str, float | None]] | None:
    """{"classification_auroc": {control: AUROC or None}, "localisation_auroc": {…}}; None when absent."""
    path = Path(path)
    if not path.is_file():
        return None
    report = read_json(path, expect=dict)
    if report.get("schema") != CRITIC_SCHEMA:
        raise ValueError(f"{path}: field `schema` is {report.get('schema')!r}, expected {CRITIC_SCHEMA!r}")
    out = {}
    for section in CRITIC_SECTIONS:
        values = report.get(section)
        if not isinstance(values, dict):
            raise ValueError(f"{path}: field `{section}` must be an object with keys {list(CRITIC_CONTROLS)}")
        for control in CRITIC_CONTROLS:
            value = values.get(control)
            if value is not None and not (_number(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{path}: field `{section}.{control}` must be an AUROC in [0, 1] or null, "
                                 f"got {value!r}")
        out[section] = {c: (None if values.get(c) is None else float(values[c])) for c in CRITIC_CONTROLS}
    return out


def load_run(experiment: str, seed: int | None, results_path: str | Path | None, run_dirs: Sequence[str | Path],
             stage: str = "stage2") -> RunOutcome:
    """One run's outcome. `run_dirs` are its training output dirs (Stage 1's first, then Stage 2's): the weight
    statistics come from the last one's metrics.json, the critic report from the first one that has it."""
    dirs = [Path(d) for d in run_dirs]
    counts = read_problem_counts(results_path) if results_path is not None else None
    weights = read_stage_means(dirs[-1] / "metrics.json", stage) if dirs else dict.fromkeys(WEIGHT_METRICS)
    critic = next((report for d in dirs if (report := read_critic_report(d / CRITIC_REPORT)) is not None), None)
    return RunOutcome(experiment, seed, counts, weights, critic)
