"""`RunRequest`: the `wmtp` flow's parameters as one validated model, handed to the flow's steps.

The flow keeps its parameters as plain keyword arguments (what Prefect's UI, `--param` and the deployments show
and set, with their defaults); it builds one RunRequest from them, and the rest of the flow reads that.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from wmtp_core.experiments import ExperimentName


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: ExperimentName
    preset: str
    use_micro_model: bool
    dataset_suffix: str | None
    base_checkpoint: str | None
    infrastructure: str  # "local" or a saved VesslJob block
    device: str
    eval_dataset: str
    eval_limit: int | None
    eval_n: int
    eval_max_new_tokens: int
    upload_target: str | None  # a directory, volume://…, "local-volume", or None (no upload)
    micro_plan: str
    train_overrides: list[str]
    storage_root: str | None
    seed: int | None  # the training seed (run.seed) and eval sampling seed; None: the config's (eval: 0)

    @property
    def label(self) -> str:
        return self.experiment if self.seed is None else f"{self.experiment}-s{self.seed}"

    @property
    def overrides(self) -> list[str]:
        """`--set` overrides of every stage: the given ones, then the seed."""
        return [*self.train_overrides, *([f"run.seed={self.seed}"] if self.seed is not None else [])]
