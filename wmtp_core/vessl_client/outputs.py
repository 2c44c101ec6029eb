"""Bring a remote training run's outputs to this machine: its records, and after Stage 2 its exported model and
value head, each file checked against the SHA256 the run recorded.

A remote run (VESSL) writes under `<export mount>/<job name>/` on its export volume. `fetch_run_outputs` takes the
block's download function (`VesslJob.fetch_export`: files under a volume URL -> a local dir, filtered, SHA256-checked)
and the run's result.json, and returns where the local copies are plus the last checkpoint's path relative to the
export mount (what a later run that imports the volume resumes from).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from wmtp_core.io import read_json
from wmtp_core.tracking.provenance import model_weights_sha256
from wmtp_core.train.job import TrainResult

# fetch(source_url, dest_dir, *, include=rel -> bool, expected_sha256={rel: sha})
Fetch = Callable[..., Any]


class OutputsNotFetched(RuntimeError):
    """A remote stage finished, but its outputs could not be brought to this machine (not retried: a retry of the
    step would train again)."""


class FetchedRun(NamedTuple):
    output_dir: Path  # <runs_dir>/<job name>: the local copy
    model_dir: Path | None
    value_head_path: Path | None
    checkpoint: str | None  # the stage's last checkpoint, relative to the export mount


def fetch_run_outputs(fetch: Fetch, export_url: str, r: TrainResult, stage: str, job_name: str,
                      runs_dir: Path) -> FetchedRun:
    """Download a remote stage's records (and after Stage 2 its model + value head, SHA256-checked) from
    `<export_url>/<job_name>` to `<runs_dir>/<job_name>`; raise OutputsNotFetched naming the volume path."""
    source, local = f"{export_url.rstrip('/')}/{job_name}", runs_dir / job_name
    what = "records"
    try:
        remote_out = PurePosixPath(r.output_dir)  # the path the job saw: <export mount>/<job_name>
        if remote_out.name != job_name:
            raise ValueError(f"result.json output_dir {remote_out} is not <export mount>/{job_name}")

        def rel(path: str | Path) -> str:
            return PurePosixPath(path).relative_to(remote_out).as_posix()

        head_rel = rel(r.value_head_path) if r.value_head_path else None
        fetch(source, local, include=lambda f: "/" not in f and f != head_rel)
        refs = read_json(local / "checkpoints.json", expect=dict) if (local / "checkpoints.json").is_file() else {}
        last = (refs.get(stage) or {}).get("path")
        checkpoint = f"{job_name}/{rel(last)}" if last else None
        if stage != "stage2" or not r.model_dir:  # only the final stage's model is evaluated / uploaded
            return FetchedRun(local, None, None, checkpoint)
        model_rel = rel(r.model_dir)
        what = f"model {model_rel}/"
        fetch(source, local, include=lambda f: f == f"{model_rel}/metadata.json")
        meta = read_json(local / model_rel / "metadata.json", expect=dict)
        expected = {f"{model_rel}/{name}": entry["sha256"] for name, entry in meta["files"].items()}
        if head_rel is not None:
            if not r.value_head_sha256:
                raise ValueError("result.json has a value head but no value_head_sha256 to check it against")
            expected[head_rel] = r.value_head_sha256
        fetch(source, local, include=lambda f: f in expected, expected_sha256=expected)
        if model_weights_sha256(local / model_rel) != r.weights_sha256:
            raise ValueError(f"weights SHA256 in {model_rel}/metadata.json differs from result.json's "
                             f"{r.weights_sha256}")
    except Exception as exc:  # noqa: BLE001 - re-raised with the volume path and the reason
        raise OutputsNotFetched(f"{stage}: could not fetch the run's {what} from {source} to {local}: {exc}") from exc
    return FetchedRun(local, local / model_rel, local / head_rel if head_rel else None, checkpoint)
