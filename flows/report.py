"""Text the flows publish: the per-experiment markdown summary, the comparison table, the console table."""

from __future__ import annotations

from tasks.results import ExperimentSummary
from wmtp_core.secrets import redact

KEY_METRICS = ("stage2/loss", "stage2/ce", "stage1/value_loss", "stage1/loss")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _key_metrics(summary: ExperimentSummary) -> dict[str, float]:
    return {k: summary.final_metrics[k] for k in KEY_METRICS if k in summary.final_metrics}


def summary_markdown(summary: ExperimentSummary, mlflow_url: str, tracking_uri: str) -> str:
    lines = [f"# WMTP — {run_label(summary)}", "",
             f"- Prefect flow run: `{summary.flow_run_id}`",
             f"- MLflow parent run: `{summary.mlflow_parent_run_id}` ({mlflow_url}; store `{redact(tracking_uri)}`)",
             f"- Trained model: `{summary.model_dir}`",
             f"- Uploaded to: `{summary.upload_target or 'not uploaded'}`", "",
             "## Steps", "", "| step | state | note |", "|---|---|---|"]
    lines += [f"| {s.step} | {s.state} | {s.message.replace('|', '/')} |" for s in summary.steps]
    lines += ["", "## Pass@k", ""]
    lines += [f"- {k}: {v:.4f}" for k, v in summary.pass_at_k.items()] or ["- not evaluated"]
    lines += ["", "## Final training metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(summary.final_metrics.items())]
    return "\n".join(lines) + "\n"


def run_label(summary: ExperimentSummary) -> str:
    return summary.experiment if summary.seed is None else f"{summary.experiment} s{summary.seed}"


def comparison_rows(summaries: list[ExperimentSummary]) -> list[dict[str, str]]:
    """One row per experiment: pass@k [bootstrap 95% CI], paired difference to baseline and its verdict, weight
    statistics, critic report (wmtp_core.eval.compare)."""
    from wmtp_core.eval.compare import comparison_rows as rows_for
    from wmtp_core.eval.compare_inputs import load_run

    return rows_for([load_run(s.experiment, s.seed, s.eval_results_path, s.run_dirs) for s in summaries])


def run_rows(summaries: list[ExperimentSummary]) -> list[dict[str, str]]:
    """One row per run (experiment x seed): its pass@k, key final metrics, cache use and run ids."""
    rows = []
    for s in summaries:
        row = {"run": run_label(s), **{k: _fmt(v) for k, v in s.pass_at_k.items()},
               **{k: _fmt(v) for k, v in _key_metrics(s).items()},
               "cached steps": str(sum(r.state == "Cached" for r in s.steps)),
               "mlflow run": s.mlflow_parent_run_id or "-", "flow run": s.flow_run_id or "-"}
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, str]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    widths = {c: max(len(c), *(len(row.get(c, "")) for row in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    sep = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(row.get(c, "").ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join([line, sep, *body])


def steps_table(summaries: list[ExperimentSummary]) -> str:
    rows = [{"run": run_label(s), "step": r.step, "state": r.state, "note": r.message[:70]}
            for s in summaries for r in s.steps]
    return console_table(rows)
