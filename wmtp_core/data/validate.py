"""`wmtp validate-datasets`: row schemas, pandera frame schemas, token lengths, duplicates, split leakage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wmtp_core.data.errors import RowError
from wmtp_core.data.frames import frame_errors, processed_schema, raw_schema
from wmtp_core.data.jsonl import iter_jsonl
from wmtp_core.data.layout import SPLIT_FILES, SourceLayout, display_path
from wmtp_core.data.schema import EOS_TEXT, Problem, combine, processed_problems, raw_problems, round_of
from wmtp_core.data.sp import SpTokenizer
from wmtp_core.data.split import SMALL, SPLITS


@dataclass
class FileCheck:
    path: Path
    rows: list[dict] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    total: int = 0  # lines read (valid + invalid)
    longest: int = 0  # most tokens in one valid processed row (BOS + prompt + code + EOS)
    errors: list[RowError] = field(default_factory=list)


@dataclass
class ValidationReport:
    errors: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> file key -> rows

    @property
    def ok(self) -> bool:
        return not self.errors


def read_checked(path: Path, row_check: Callable[[dict], list[Problem]]) -> FileCheck:
    """Every line parsed and checked; valid rows kept with their line numbers."""
    fc = FileCheck(path)
    display = display_path(path)
    for line_no, obj in iter_jsonl(path, display):
        fc.total += 1
        if isinstance(obj, RowError):
            fc.errors.append(obj)
            continue
        problems = row_check(obj)
        if problems:
            fc.errors.append(RowError(display, line_no, *combine(problems)))
        if not problems:
            fc.rows.append(obj)
            fc.lines.append(line_no)
    return fc


def token_count(tokenizer: SpTokenizer, row: dict) -> int:
    """BOS + prompt + code + EOS, as encode_example builds it."""
    code = row["response"][: -len(EOS_TEXT)]
    return len(tokenizer.encode(row["prompt"], bos=True)) + len(tokenizer.encode(code)) + 1


def check_raw_file(path: Path) -> FileCheck:
    fc = read_checked(path, raw_problems)
    flat = [
        {k: v for k, v in r.items() if k != "test_cases"} | {"n_tests": len(r["test_cases"].get("input", []))}
        for r in fc.rows
    ]
    fc.errors += frame_errors(raw_schema(), flat, fc.lines, display_path(path))
    return fc


def check_processed_file(path: Path, incorrect: bool, tokenizer: SpTokenizer, max_tokens: int) -> FileCheck:
    fc = read_checked(path, lambda o: processed_problems(o, expect_correct=not incorrect))
    flat = [
        {
            "prompt": r["prompt"],
            "response": r["response"],
            **r["metadata"],
            "n_tokens": token_count(tokenizer, r),
        }
        for r in fc.rows
    ]
    fc.errors += frame_errors(processed_schema(max_tokens, not incorrect), flat, fc.lines, display_path(path))
    fc.longest = max((r["n_tokens"] for r in flat), default=0)
    return fc


def _leakage(layout: SourceLayout, files: dict[tuple[str, bool], FileCheck]) -> list[str]:
    """No round and no identical prompt in two of train/validation/test; small sets inside their split."""
    rounds: dict[str, set[str]] = {s: set() for s in SPLITS}
    prompts: dict[str, set[str]] = {s: set() for s in SPLITS}
    for (name, _), fc in files.items():
        if name in SPLITS:
            rounds[name] |= {round_of(r["metadata"]["task_id"]) for r in fc.rows}
            prompts[name] |= {r["prompt"] for r in fc.rows}
    errors = []
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            for shared, what in ((rounds[a] & rounds[b], "round"), (prompts[a] & prompts[b], "prompt")):
                if shared:
                    sample = sorted(shared)[0][:60]
                    errors.append(
                        f"{display_path(layout.dir)}: split leakage: {len(shared)} {what}(s) in both "
                        f"{a} and {b} (e.g. {sample!r})"
                    )
    for (name, incorrect), fc in files.items():
        if name in SMALL:
            base = {(r["prompt"], r["response"]) for r in files[(SMALL[name][0], incorrect)].rows}
            outside = [ln for r, ln in zip(fc.rows, fc.lines) if (r["prompt"], r["response"]) not in base]
            cap = SMALL[name][1]
            errors += [
                f"{display_path(fc.path)}:{ln}: <row>: not in {SMALL[name][0]}.jsonl" for ln in outside
            ]
            if fc.total > cap:
                errors.append(f"{display_path(fc.path)}: {fc.total} rows > {cap} allowed for {name}")
    return errors


def check_raw_extra(layout: SourceLayout) -> list[str]:
    """Problems of the user's extra raw rows: each raw_extra/*.jsonl checked like a raw file, and every
    raw_extra row that the last prepare-data rejected (rejects.jsonl: length, split, duplicate, ...) is an error
    too: a row the user added but training never sees must not pass silently."""
    files = layout.raw_extra_files()
    errors = [str(e) for path in files for e in check_raw_file(path).errors]
    if not files:
        return errors
    if not layout.rejects_file.is_file():
        return errors + [f"{display_path(layout.rejects_file)}: missing; run `wmtp prepare-data` first"]
    root, extra = layout.dir.parent, {p.resolve() for p in files}
    for _, entry in iter_jsonl(layout.rejects_file, display_path(layout.rejects_file)):
        if isinstance(entry, RowError):
            errors.append(str(entry))
        elif (root / str(entry.get("file", ""))).resolve() in extra and entry.get("stage") not in ("source", "raw"):
            # (malformed and schema-invalid lines were found above by re-checking the file itself)
            errors.append(f"{entry.get('message')} (raw_extra row rejected by prepare-data, stage "
                          f"{entry.get('stage')})")
    return errors


def validate_source(
    layout: SourceLayout, tokenizer: SpTokenizer, max_tokens: int, report: ValidationReport
) -> None:
    counts: dict[str, int] = {}
    raw = check_raw_file(layout.raw_file)
    counts["raw"] = raw.total
    report.errors += [str(e) for e in raw.errors]
    report.errors += check_raw_extra(layout)
    files: dict[tuple[str, bool], FileCheck] = {}
    for name in SPLIT_FILES:
        for incorrect in (False, True):
            fc = check_processed_file(
                layout.split_file(name, incorrect=incorrect), incorrect, tokenizer, max_tokens
            )
            files[(name, incorrect)] = fc
            counts[f"{fc.path.parent.name}/{name}"] = fc.total
            report.errors += [str(e) for e in fc.errors]
    report.errors += _leakage(layout, files)
    counts["longest_row_tokens"] = max(fc.longest for fc in files.values())
    report.counts[layout.source] = counts


def validate_datasets(
    datasets_root: Path, sources: list[str], tokenizer_model: Path, max_tokens: int = 2048
) -> ValidationReport:
    tokenizer = SpTokenizer(tokenizer_model)
    report = ValidationReport()
    for source in sources:
        validate_source(SourceLayout(Path(datasets_root), source), tokenizer, max_tokens, report)
    return report
