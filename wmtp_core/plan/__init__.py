"""Memory plan: predicted per-GPU peak of a training step, checked before a GPU is paid for (`wmtp plan`)."""

from wmtp_core.plan.advice import (
    SHAPES,
    MemoryPlanError,
    Verdict,
    format_verdict,
    inputs_from_config,
    job_memory_check,
    verdict,
)
from wmtp_core.plan.job import check_train_job
from wmtp_core.plan.memory import MemoryPlan, PlanInputs, plan_memory

__all__ = ["SHAPES", "MemoryPlan", "MemoryPlanError", "PlanInputs", "Verdict", "check_train_job", "format_verdict",
           "inputs_from_config", "job_memory_check", "plan_memory", "verdict"]
