"""Entry points the CLI and the flow call: prepare, validate (+ manifest), and both in one pure call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wmtp_core import paths
from wmtp_core.data.errors import DatasetError
from wmtp_core.data.layout import SETTINGS_NAME, display_path
from wmtp_core.data.manifest import (
    build_manifest,
    read_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)
from wmtp_core.data.pipeline import SourceReport, prepare_datasets
from wmtp_core.data.split import SplitConfig
from wmtp_core.data.validate import ValidationReport, validate_datasets
from wmtp_core.io import atomic_write_text

DEFAULT_SOURCES = ("codecontests", "mbpp", "humaneval")


class PrepareSettings(BaseModel):
    """Options of `prepare-data`, recorded in <datasets_root>/prepare.json for `validate-datasets`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: tuple[str, ...] = DEFAULT_SOURCES
    tokenizer_model: str = str(paths.CODE_TOKENIZER)
    max_tokens: int = Field(2048, gt=0)
    seed: int = 0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    allow_truncation: bool = False


@dataclass(frozen=True)
class PrepareResult:
    manifest_path: Path
    manifest_sha256: str
    counts: dict  # source -> {"in", "kept", "rejected", "extra_in", "extra_kept", "processed/train", ...}


def _repo_relative(path: Path) -> str:
    path = Path(path).resolve()
    return path.relative_to(paths.REPO_ROOT).as_posix() if path.is_relative_to(paths.REPO_ROOT) else str(path)


def load_settings(datasets_root: Path) -> PrepareSettings | None:
    """The settings of the last `prepare-data` under `datasets_root`, or None when it never ran."""
    path = Path(datasets_root) / SETTINGS_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        settings = PrepareSettings.model_validate(data["settings"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValidationError) as err:
        raise DatasetError(
            f"{display_path(path)}: unreadable settings (run `wmtp prepare-data` again): {err}"
        ) from err
    model = Path(settings.tokenizer_model)
    return (
        settings
        if model.is_absolute()
        else settings.model_copy(update={"tokenizer_model": str(paths.REPO_ROOT / model)})
    )


def run_prepare(datasets_root: Path, settings: PrepareSettings) -> list[SourceReport]:
    cfg = SplitConfig(tuple(settings.ratios), settings.seed)
    reports = prepare_datasets(
        Path(datasets_root),
        list(settings.sources),
        Path(settings.tokenizer_model),
        settings.max_tokens,
        cfg,
        settings.allow_truncation,
    )
    recorded = settings.model_copy(update={"tokenizer_model": _repo_relative(Path(settings.tokenizer_model))})
    record = {
        "settings": recorded.model_dump(mode="json"),
        "tokenizer_sha256": sha256_file(Path(settings.tokenizer_model)),
    }
    atomic_write_text(Path(datasets_root) / SETTINGS_NAME, json.dumps(record, indent=2) + "\n")
    return reports


def extra_rejects(reports: list[SourceReport]) -> list[str]:
    """The user's rejected rows (raw_extra/ lines not kept), as `file:line: field: reason` (prepare-data names
    files relative to the datasets root: `<source>/raw_extra/...`); [] when none."""
    return [e for r in reports for e in r.errors if e.startswith(f"{r.source}/raw_extra/")]


def check_strict(reports: list[SourceReport]) -> None:
    """--strict: raise DatasetError naming every rejected raw_extra row (source rows over budget are expected)."""
    rejected = extra_rejects(reports)
    total = sum(r.extra_rejected for r in reports)
    if rejected or total:
        raise DatasetError(f"{max(total, len(rejected))} raw_extra row(s) rejected (strict):\n" + "\n".join(rejected))


def run_validate(
    datasets_root: Path, settings: PrepareSettings, verify: bool = False
) -> tuple[ValidationReport, Path | None, str | None]:
    """Validate every file; then write manifest.json (or, with verify, compare against the recorded one)."""
    root = Path(datasets_root)
    report = validate_datasets(
        root, list(settings.sources), Path(settings.tokenizer_model), settings.max_tokens
    )
    fresh = build_manifest(
        root, list(settings.sources), Path(settings.tokenizer_model), settings.max_tokens, report.counts
    )
    if verify:
        report.errors += verify_manifest(root, read_manifest(root), fresh)
        return report, root / "manifest.json", None
    if not report.ok:
        return report, None, None
    manifest_path, digest = write_manifest(root, fresh)
    return report, manifest_path, digest


def summary_counts(reports: list[SourceReport], validation: ValidationReport) -> dict:
    counts = {}
    for r in reports:
        counts[r.source] = {
            "records_in": r.records_in,
            "in": r.rows_in,
            "extra_in": r.extra_rows_in,
            "extra_kept": r.extra_kept,
            "kept": r.kept,
            "rejected": r.rejected,
            "shortened": r.shortened,
            "truncated": r.truncated,
            "special_judge": r.special_judge,
            "without_tests": r.without_tests,
            "skipped": sum(r.skipped.values()),
            **validation.counts.get(r.source, {}),
        }
    return counts


def prepare_and_validate(
    datasets_root: Path,
    sources: list[str],
    tokenizer_model: Path,
    max_tokens: int = 2048,
    seed: int = 0,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    allow_truncation: bool = False,
    strict: bool = True,
) -> PrepareResult:
    """prepare-data then validate-datasets; raises DatasetError (with every problem) when validation fails, and
    (strict) when any raw_extra row was rejected."""
    settings = PrepareSettings(
        sources=tuple(sources),
        tokenizer_model=str(tokenizer_model),
        max_tokens=max_tokens,
        seed=seed,
        ratios=tuple(ratios),
        allow_truncation=allow_truncation,
    )
    reports = run_prepare(datasets_root, settings)
    if strict:
        check_strict(reports)
    validation, manifest_path, digest = run_validate(datasets_root, settings)
    if not validation.ok or manifest_path is None or digest is None:
        raise DatasetError(
            f"{display_path(Path(datasets_root))}: validation failed:\n" + "\n".join(validation.errors)
        )
    return PrepareResult(manifest_path, digest, summary_counts(reports, validation))
