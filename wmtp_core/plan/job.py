"""The memory check a flow runs before it submits a TrainJob to GPUs (a block declaring its count and memory)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wmtp_core.plan.advice import MemoryPlanError, Verdict, job_memory_check

if TYPE_CHECKING:
    from vendor.meta_llama.model import ModelArgs
    from wmtp_core.train.job import TrainJob


def _read_args(model_dir: Path) -> ModelArgs:
    from wmtp_core.plan.advice import read_model_args

    return read_model_args(Path(model_dir))


def check_train_job(job: TrainJob, gpus: int, gpu_memory_gb: float, model_dir: Path,
                    reference_dir: Path | None = None) -> Verdict:
    """Resolve the job's config, plan it with the dims of the (local) model and reference dirs, and raise
    MemoryPlanError naming what would fit when it does not fit `gpus` GPUs of `gpu_memory_gb` GiB."""
    from wmtp_core.config import ConfigError

    try:
        cfg = job.resolve()
    except ConfigError as exc:
        raise MemoryPlanError(f"cannot plan the job: {exc}") from exc
    reference = _read_args(reference_dir) if reference_dir is not None else None
    return job_memory_check(cfg, gpus, gpu_memory_gb, args=_read_args(model_dir), reference_args=reference)
