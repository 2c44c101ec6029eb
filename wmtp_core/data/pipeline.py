"""`wmtp prepare-data`: source (+ raw_extra) -> raw -> processed (+ incorrect bucket), splits, small sets, rejects.

Rows from `<source>/raw_extra/*.jsonl` (already raw-schema, e.g. verified negatives) are checked like raw rows
and join the split of their problem's group (see `split.Placement`); they are not copied into
`raw/<source>.jsonl`, which holds only the rows converted from `source/`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from wmtp_core.data.errors import RowError
from wmtp_core.data.layout import SPLIT_FILES, SourceLayout
from wmtp_core.data.prepare import Budget, process_row
from wmtp_core.data.reference_flags import load_reference_flags
from wmtp_core.data.schema import combine, raw_problems, round_of
from wmtp_core.data.sources.common import SourceRows
from wmtp_core.data.sources.registry import read_raw_extra, read_source
from wmtp_core.data.sp import SpTokenizer
from wmtp_core.data.split import SMALL, Placement, SplitConfig, assign_splits, round_robin_order, small_groups
from wmtp_core.io import atomic_write_jsonl


@dataclass
class SourceReport:
    source: str
    records_in: int = 0
    raw_rows: int = 0
    extra_rows_in: int = 0  # lines read from raw_extra/*.jsonl
    extra_kept: int = 0
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

    @property
    def extra_rejected(self) -> int:
        """raw_extra/ lines not kept (malformed, schema, length, split or duplicate): the user's rejected rows."""
        return self.extra_rows_in - self.extra_kept


@dataclass
class _Kept:
    raw: list[dict] = field(default_factory=list)
    processed: list[dict] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def extend(self, other: _Kept) -> None:
        self.raw += other.raw
        self.processed += other.processed
        self.splits += other.splits
        self.groups += other.groups


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
    seen: dict[tuple[str, str], tuple],
    place: Placement | None = None,
) -> _Kept:
    """Length rule, then (extra rows: `place` given) the split rule, then duplicates; each row gets the first
    reason that applies, so an over-length extra row is rejected for its length."""
    kept = _Kept()
    for row, origin in zip(raw, origins):
        result = process_row(row, source, budget, untrusted)
        if result.row is None:
            _reject(report, rejects, RowError(*origin, "output", result.reason), "length")
            continue
        group, reason = place.group_for(row) if place is not None else ("", "")
        if group is None:
            _reject(report, rejects, RowError(*origin, "task_id", reason), "split")
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


def _place_base(kept: _Kept, source: str, cfg: SplitConfig) -> Placement:
    kept.splits = assign_splits(kept.raw, source, cfg)
    place = Placement.of(kept.raw, kept.splits)
    kept.groups = [place.group_of_round[round_of(r["task_id"])] for r in kept.raw]
    return place


def _assign_extra(kept: _Kept, place: Placement) -> None:
    kept.groups = [place.group_for(r)[0] for r in kept.raw]
    kept.splits = [place.split_for(g) for g in kept.groups]


def _bucket_rows(kept: _Kept, name: str, incorrect: bool, small: dict[str, set[str]]) -> list[dict]:
    base, cap = SMALL.get(name, (name, None))
    picked = [
        i
        for i, (p, s, g) in enumerate(zip(kept.processed, kept.splits, kept.groups))
        if s == base and p["metadata"]["is_correct"] is not incorrect and (cap is None or g in small[name])
    ]
    if cap is not None and incorrect:  # spread the capped incorrect rows over as many problems as possible
        order = round_robin_order([kept.processed[i]["metadata"]["task_id"] for i in picked])
        picked = sorted(picked[j] for j in order[:cap])
    return [kept.processed[i] for i in (picked if cap is None else picked[:cap])]


def _write_splits(
    layout: SourceLayout, kept: _Kept, small: dict[str, set[str]], report: SourceReport
) -> None:
    for name in SPLIT_FILES:
        for incorrect in (False, True):
            path = layout.split_file(name, incorrect=incorrect)
            rows = _bucket_rows(kept, name, incorrect, small)
            report.split_rows[f"{path.parent.name}/{name}"] = atomic_write_jsonl(path, rows)


def prepare_source(layout: SourceLayout, budget: Budget, cfg: SplitConfig) -> SourceReport:
    rows, extra = read_source(layout), read_raw_extra(layout)
    report = SourceReport(
        layout.source,
        records_in=rows.records_in,
        extra_rows_in=extra.records_in,
        skipped=dict(rows.skipped),
        special_judge=len(rows.special_judge),
    )
    rejects: list[dict] = []
    for err in rows.errors + extra.errors:
        _reject(report, rejects, err, "source")
    raw, origins = _valid_raw(rows, report, rejects)
    extra_raw, extra_origins = _valid_raw(extra, report, rejects)
    report.raw_rows = len(raw)
    if not rows.from_raw:
        atomic_write_jsonl(layout.raw_file, raw)
    flags = load_reference_flags(layout)
    report.reference_flags = flags.note
    seen: dict[tuple[str, str], tuple] = {}
    kept = _process(raw, origins, layout.source, budget, report, rejects, flags.task_ids, seen)
    place = _place_base(kept, layout.source, cfg)
    small = {n: small_groups(kept.raw, kept.splits, b, cap, cfg.seed) for n, (b, cap) in SMALL.items()}
    kept_extra = _process(
        extra_raw, extra_origins, layout.source, budget, report, rejects, flags.task_ids, seen, place
    )
    _assign_extra(kept_extra, place)
    report.extra_kept = len(kept_extra.raw)
    kept.extend(kept_extra)
    _write_splits(layout, kept, small, report)
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
