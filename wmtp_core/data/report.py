"""Human-readable counts for the CLI (in = kept + rejected, rows per split file)."""

from __future__ import annotations

from wmtp_core.data.pipeline import SourceReport

MAX_SHOWN = 20


def _split_line(split_rows: dict[str, int]) -> str:
    return "  ".join(f"{k}={v}" for k, v in split_rows.items())


def format_prepare(report: SourceReport, rejects_path: str) -> list[str]:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.reject_reasons.items())) or "none"
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())) or "none"
    lines = [
        f"{report.source}: records {report.records_in} -> raw rows {report.raw_rows} (skipped: {skipped}); "
        f"raw_extra rows {report.extra_rows_in} (kept {report.extra_kept})",
        f"  in {report.rows_in} = kept {report.kept} + rejected {report.rejected} (reasons: {reasons}); "
        f"shortened {report.shortened}, truncated {report.truncated}",
        f"  has_tests=false rows {report.without_tests} (special-judge statements {report.special_judge}; "
        f"{report.reference_flags})",
        f"  {_split_line(report.split_rows)}",
    ]
    shown = report.errors[:MAX_SHOWN]
    lines += [f"  reject: {e}" for e in shown]
    if len(report.errors) > len(shown):
        lines.append(f"  ... {len(report.errors) - len(shown)} more")
    if report.errors:
        lines.append(f"  all rejects: {rejects_path} (file names are relative to the datasets root)")
    return lines


def format_counts(counts: dict[str, dict[str, int]]) -> list[str]:
    return [f"{source}: {_split_line(c)}" for source, c in counts.items()]
