"""Prefect infrastructure blocks for training jobs: `LocalProcess` and `VesslJob`, one interface.

Both blocks offer (see docs/vessl.md):
    output_dir(job_name) -> str          where the job must write its outputs (as the job sees the path)
    train_command(train_args) -> list    `wmtp train ...` (the flow passes `--job <TrainJob JSON>`; torchrun for
                                         several GPUs)
    submit(command, env=None, workdir=None, result_path="result.json", name=None, imports=None) -> JobResult
`submit` runs the command to the end, streams its output lines into the Prefect run logger (stdout outside a
run), and returns the parsed small result JSON the job wrote (VesslJob: `fetch_export` downloads more of a run's
export volume afterwards). A failed job raises `JobFailed` (VESSL:
`RemoteRunFailed`) naming the run, its final status and last log lines. Leaving `submit` early (cancellation,
crash, timeout) kills the local process / terminates the VESSL run; `terminate_active_vessl_runs` is a flow
hook (`on_cancellation=[...]`, `on_crashed=[...]`) for runs still registered when the flow dies elsewhere.
Register the types with `prefect block register -f deployments/blocks.py`; save defaults with
`uv run python deployments/setup_blocks.py`.
"""

from __future__ import annotations

import os
import re
import secrets as _random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from wmtp_core import paths
from wmtp_core.io import read_json
from wmtp_core.process import run_streaming
from wmtp_core.secrets import REDACTOR, redact, redact_data
from wmtp_core.train.job import TrainResult
from wmtp_core.vessl_client.cancel import ACTIVE_RUNS
from wmtp_core.vessl_client.runner import RemoteJob, RemoteRunFailed, run_remote_job
from wmtp_core.vessl_client.spec import build_run_spec, train_command
from wmtp_core.vessl_client.storage import VolumeRef


@dataclass(frozen=True)
class JobResult:
    backend: str  # "local" | "vessl"
    run_id: str  # local: process id; vessl: run id
    status: str  # "completed"
    result: dict  # the parsed result JSON the job wrote
    result_location: str  # local path or volume:// URL of that JSON
    log_tail: list[str] = field(default_factory=list)
    export_url: str = ""  # vessl: volume:// URL of this run's export mount (import it into a later run); local: ""

    def train_result(self) -> TrainResult:
        """The result of a `wmtp train` job (ValueError naming its location when it is not one)."""
        return TrainResult.from_mapping(self.result, self.result_location)


class JobFailed(RuntimeError):
    """A local job exited non-zero or wrote no readable result."""


def log_sink() -> Callable[[str], None]:
    """Prefect run logger inside a flow/task run, else stdout; every line redacted."""
    try:
        from prefect.logging import get_run_logger

        logger = get_run_logger()
        return lambda line: logger.info(redact(line))
    except Exception:  # noqa: BLE001 - MissingContextError outside a run
        return lambda line: print(redact(line), flush=True)


def job_name(name: str | None, command: Sequence[str]) -> str:
    """A VESSL-safe unique name: lowercase, digits and '-', with a random suffix."""
    base = re.sub(r"[^a-z0-9-]+", "-", (name or "wmtp-" + Path(command[0]).name).lower()).strip("-")[:48]
    return f"{base or 'wmtp-job'}-{_random.token_hex(3)}"


class LocalProcess(Block):
    """Runs the job as a subprocess on this machine (what flows/local.py uses)."""

    _block_type_name = "WMTP Local Process"
    _block_type_slug = "wmtp-local-process"
    _description = "Run WMTP training jobs as a local subprocess; same interface as VesslJob."

    runs_dir: str = Field(default=str(paths.RUNS_ROOT), description="Parent of per-job output directories.")
    nproc: int = Field(default=1, ge=1, description="Processes for torchrun (1 = plain `wmtp train`).")
    timeout_s: float = Field(default=6 * 3600, gt=0)
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for every job.")

    def output_dir(self, job_name: str) -> str:
        return str(Path(self.runs_dir).resolve() / job_name)

    def train_command(self, train_args: Sequence[str]) -> list[str]:
        cmd = train_command(train_args, self.nproc)
        if cmd[0] == "wmtp":
            return [sys.executable, "-m", "wmtp_core.cli", *cmd[1:]]
        return [sys.executable, "-m", "torch.distributed.run", *cmd[1:]]

    def submit(self, command: Sequence[str], env: Mapping[str, str] | None = None, workdir: str | None = None,
               result_path: str = "result.json", name: str | None = None,
               imports: Mapping[str, str] | None = None) -> JobResult:
        """Run `command` here; `imports` (mount -> volume URL) is accepted for interface parity and ignored:
        local jobs see the local filesystem."""
        on_log = log_sink()
        cwd = Path(workdir) if workdir else paths.REPO_ROOT
        result_file = Path(result_path) if Path(result_path).is_absolute() else cwd / result_path
        full_env = {**os.environ, **self.env, **(env or {})}
        REDACTOR.register_mapping({**self.env, **(env or {})})
        on_log(f"[local] starting {name or 'job'}: {redact(' '.join(command))}")
        code, tail = run_streaming(list(command), cwd, full_env, on_log, self.timeout_s)
        if code != 0:
            lines = "\n".join(f"  | {t}" for t in tail)
            raise JobFailed(redact(f"local job {name or command[0]} exited with code {code}\n{lines}"))
        return JobResult("local", str(code), "completed", read_json_result(result_file), str(result_file), tail)


def read_json_result(path: Path) -> dict:
    data = read_json(path, JobFailed, expect=dict,
                     missing=lambda p: JobFailed(f"{p}: the job finished but wrote no result file"))
    return redact_data(data)  # type: ignore[return-value]


class VesslJob(Block):
    """Runs the job as a VESSL run (A100, 1-4 GPUs); reads its result JSON back from the export volume."""

    _block_type_name = "WMTP VESSL Job"
    _block_type_slug = "wmtp-vessl-job"
    _description = "Submit WMTP training jobs as VESSL runs (same interface as LocalProcess)."

    env_file: str = Field(default=str(paths.REPO_ROOT / ".env.vessl"),
                          description="dotenv file with VESSL_ACCESS_TOKEN, VESSL_ORGANIZATION, VESSL_PROJECT.")
    api_host: str | None = Field(default=None, description="Override VESSL_API_HOST.")
    access_token: SecretStr | None = Field(default=None, description="Override the token from env_file.")
    organization: str | None = None
    project: str | None = None
    cluster: str = Field(default="", description="VESSL cluster name (`vessl cluster list`).")
    preset: str = Field(default="", description="Resource preset providing gpu_count GPUs (e.g. an A100 preset).")
    gpu_count: int = Field(default=1, ge=1, le=8)
    gpu_memory_gb: float = Field(default=80.0, gt=0, description="Memory per GPU (GiB) of the preset; the flow "
                                 "checks the memory plan (`wmtp plan`) against gpu_count x this before submitting.")
    image: str = Field(default="", description="Image built from ./Dockerfile and pushed (docs/vessl.md).")
    workdir: str = "/app"
    import_volumes: dict[str, str] = Field(default_factory=lambda: {
        "/app/storage/models": "volume://wmtp-storage/wmtp-models/models",
        "/app/storage/datasets": "volume://wmtp-storage/wmtp-models/datasets"},
        description="mount path -> volume://storage/volume[/path] imported read-only.")
    export_volume: str = Field(default="volume://wmtp-storage/wmtp-runs",
                               description="Job outputs go to <export_volume>/<job name>/.")
    export_mount: str = "/mnt/export"
    secret_env: dict[str, str] = Field(default_factory=lambda: {
        "MLFLOW_TRACKING_USERNAME": "mlflow-username", "MLFLOW_TRACKING_PASSWORD": "mlflow-password"},
        description="ENV var -> VESSL secret name (values never leave VESSL).")
    env: dict[str, str] = Field(default_factory=dict, description="Plain (non-secret) env for every job.")
    timeout_s: float = Field(default=24 * 3600, gt=0)
    poll_interval_s: float = Field(default=10.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=2.0, ge=0)

    def settings(self) -> Any:
        from wmtp_core.secrets import load_env_file
        from wmtp_core.vessl_client.settings import settings_from_mapping

        values = {**load_env_file(self.env_file), **{k: v for k, v in os.environ.items() if k.startswith("VESSL_")}}
        overrides = {"VESSL_API_HOST": self.api_host, "VESSL_ORGANIZATION": self.organization,
                     "VESSL_PROJECT": self.project,
                     "VESSL_ACCESS_TOKEN": self.access_token.get_secret_value() if self.access_token else None}
        values.update({k: v for k, v in overrides.items() if v})
        base = settings_from_mapping(values, f"{self.env_file} / VesslJob block")
        return base.model_copy(update={"request_timeout_s": self.request_timeout_s,
                                       "max_attempts": self.max_attempts, "backoff_base_s": self.backoff_base_s})

    def output_dir(self, job_name: str) -> str:
        return self.export_mount

    def train_command(self, train_args: Sequence[str]) -> list[str]:
        return train_command(train_args, self.gpu_count)

    def _job_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """Block env + caller env, with MLFLOW_TRACKING_URI from the env file replacing a machine-local one
        (sqlite:/file:/plain path) that a remote run could not reach."""
        from wmtp_core.secrets import load_env_file

        merged = {**self.env, **(env or {})}
        server_uri = load_env_file(self.env_file).get("MLFLOW_TRACKING_URI")
        given = merged.get("MLFLOW_TRACKING_URI")
        if server_uri and (not given or not re.match(r"^(https?|databricks)://", given)):
            merged["MLFLOW_TRACKING_URI"] = server_uri
        return merged

    def build_job(self, command: Sequence[str], env: Mapping[str, str] | None, workdir: str | None,
                  result_path: str, name: str | None, imports: Mapping[str, str] | None = None) -> RemoteJob:
        run_name = job_name(name, command)
        export = VolumeRef.parse(self.export_volume).child(run_name)
        mount = self.export_mount.rstrip("/")
        rel = result_path[len(mount) + 1 :] if result_path.startswith(mount + "/") else result_path.lstrip("/")
        spec = build_run_spec(
            name=run_name, cluster=self.cluster, preset=self.preset, image=self.image, command=list(command),
            workdir=workdir or self.workdir, env=self._job_env(env), secret_env=self.secret_env,
            imports={**self.import_volumes, **(imports or {})}, exports={mount: export.url})
        return RemoteJob(spec, export, rel)

    def submit(self, command: Sequence[str], env: Mapping[str, str] | None = None, workdir: str | None = None,
               result_path: str = "result.json", name: str | None = None,
               imports: Mapping[str, str] | None = None) -> JobResult:
        """Run `command` as a VESSL run. `result_path` is absolute under `export_mount` (or relative to it);
        `imports` adds mounts (mount path -> volume URL), e.g. an earlier JobResult.export_url."""
        from wmtp_core.vessl_client.client import VesslRunClient
        from wmtp_core.vessl_client.storage import VolumeStore

        settings = self.settings()
        job = self.build_job(command, env, workdir, result_path, name, imports)
        out = run_remote_job(VesslRunClient(settings), VolumeStore(settings), job,
                             poll_interval_s=self.poll_interval_s, timeout_s=self.timeout_s, on_log=log_sink())
        return JobResult("vessl", str(out.run_id), out.status, out.result, out.result_url, out.log_tail,
                         job.export.url)

    def fetch_export(self, source_url: str, dest: str | Path, *, include: Callable[[str], bool] | None = None,
                     expected_sha256: Mapping[str, str] | None = None) -> Any:
        """Download the files under `source_url` (e.g. `f"{JobResult.export_url}/<job name>"`) into `dest` through
        the storage API (`wmtp_core.vessl_client.sync.download_from_volume`): only those `include(rel)` accepts,
        each checked against `expected_sha256[rel]` where given. Returns the SyncReport."""
        from wmtp_core.vessl_client.storage import VolumeStore
        from wmtp_core.vessl_client.sync import download_from_volume

        return download_from_volume(VolumeStore(self.settings()), VolumeRef.parse(source_url), Path(dest),
                                    echo=log_sink(), include=include, expected_sha256=expected_sha256)


def terminate_active_vessl_runs(*_hook_args: Any) -> list[int]:
    """Flow hook (on_cancellation / on_crashed): terminate every VESSL run this process still has in flight."""
    return ACTIVE_RUNS.terminate_all("flow cancelled or crashed")


__all__ = ["JobResult", "JobFailed", "LocalProcess", "VesslJob", "RemoteRunFailed", "terminate_active_vessl_runs",
           "log_sink", "run_streaming"]
