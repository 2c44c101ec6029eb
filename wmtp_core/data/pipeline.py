"""`wmtp prepare-data`: source -> raw -> processed (+ incorrect bucket), splits, small sets, rejects."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from wmtp_core.data.atomic import atomic_write_jsonl
from wmtp_core.data.errors import RowError
from wmtp_core.data.layout import SPLIT_FILES, SourceLayout
from wmtp_core.data.prepare import Budget, process_row
from wmtp_core.data.reference_flags import load_reference_flags
from wmtp_core.data.schema import combine, raw_problems, round_of
from wmtp_core.data.sources.common import SourceRows
from wmtp_core.data.sources.registry import read_source
from wmtp_core.data.sp import SpTokenizer
from wmtp_core.data.split import SMALL, SplitConfig, assign_splits, round_groups, small_groups


@dataclass
class SourceReport:
    source: str
    records_in: int = 0
    raw_rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    rejected: int = 0
    shortened: int = 0
    truncated: int = 0
    special_judge: int = 0  # problems flagged by the statement heuristic
    without_tests: int = 0  # kept rows with has_tests=false (no I/O tests, heuristic or measured flag)
    reference_flags: str = ""
    reject_reasons: Counter = field(default_factory=Counter)
    split_rows: dict[str, int] = field(default_factory=dict)  # "processed/train" -> rows
    errors: list[str] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return self.kept + self.rejected


@dataclass
class _Kept:
    raw: list[dict] = field(default_factory=list)
    processed: list[dict] = field(default_factory=list)


def _reject(report: SourceReport, rejects: list[dict], err: RowError, stage: str) -> None:
    report.rejected += 1
    report.reject_reasons[f"{stage}: {err.field}"] += 1
    report.errors.append(str(err))
    rejects.append(err.to_json(stage))


def _valid_raw(rows: SourceRows, report: SourceReport, rejects: list[dict]) -> tuple[list[dict], list[tuple]]:
    keep, origins = [], []
    for row, origin in zip(rows.rows, rows.origins):
        problems = raw_problems(row)
        if problems:
            _reject(report, rejects, RowError(*origin, *combine(problems)), "raw")
        else:
            keep.append(row)
            origins.append(origin)
    return keep, origins


def _process(
    raw: list[dict],
    origins: list[tuple],
    source: str,
    budget: Budget,
    report: SourceReport,
    rejects: list[dict],
    untrusted: frozenset[str],
) -> _Kept:
    kept, seen = _Kept(), {}
    for row, origin in zip(raw, origins):
        result = process_row(row, source, budget, untrusted)
        if result.row is None:
            _reject(report, rejects, RowError(*origin, "output", result.reason), "length")
            continue
        key = (result.row["prompt"], result.row["response"])
        if key in seen:
            reason = f"duplicate of {seen[key][0]}:{seen[key][1]} (same prompt and response)"
            _reject(report, rejects, RowError(*origin, "<row>", reason), "duplicate")
            continue
        seen[key] = origin
        report.kept += 1
        report.shortened += result.shortened
        report.truncated += result.truncated
        report.without_tests += not result.row["metadata"]["has_tests"]
        kept.raw.append(row)
        kept.processed.append(result.row)
    return kept


def _write_splits(layout: SourceLayout, kept: _Kept, cfg: SplitConfig, report: SourceReport) -> None:
    splits = assign_splits(kept.raw, layout.source, cfg)
    groups = round_groups(kept.raw)
    group_of = [groups[round_of(r["task_id"])] for r in kept.raw]
    small = {name: small_groups(kept.raw, splits, base, cap, cfg.seed) for name, (base, cap) in SMALL.items()}
    for name in SPLIT_FILES:
        base, cap = SMALL.get(name, (name, None))
        for incorrect in (False, True):
            rows = [
                p
                for p, s, g in zip(kept.processed, splits, group_of)
                if s == base
                and p["metadata"]["is_correct"] is not incorrect
                and (cap is None or g in small[name])
            ]
            rows = rows if cap is None else rows[:cap]
            path = layout.split_file(name, incorrect=incorrect)
            report.split_rows[f"{path.parent.name}/{name}"] = atomic_write_jsonl(path, rows)


def prepare_source(layout: SourceLayout, budget: Budget, cfg: SplitConfig) -> SourceReport:
    rows = read_source(layout)
    report = SourceReport(
        layout.source,
        records_in=rows.records_in,
        skipped=dict(rows.skipped),
        special_judge=len(rows.special_judge),
    )
    rejects: list[dict] = []
    for err in rows.errors:
        _reject(report, rejects, err, "source")
    raw, origins = _valid_raw(rows, report, rejects)
    report.raw_rows = len(raw)
    if not rows.from_raw:
        atomic_write_jsonl(layout.raw_file, raw)
    flags = load_reference_flags(layout)
    report.reference_flags = flags.note
    kept = _process(raw, origins, layout.source, budget, report, rejects, flags.task_ids)
    _write_splits(layout, kept, cfg, report)
    atomic_write_jsonl(layout.rejects_file, rejects)
    return report


def prepare_datasets(
    datasets_root: Path,
    sources: list[str],
    tokenizer_model: Path,
    max_tokens: int = 2048,
    cfg: SplitConfig = SplitConfig(),
    allow_truncation: bool = False,
) -> list[SourceReport]:
    budget = Budget(SpTokenizer(tokenizer_model), max_tokens, allow_truncation)
    return [prepare_source(SourceLayout(datasets_root, s), budget, cfg) for s in sources]
