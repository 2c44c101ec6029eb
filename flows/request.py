"""The flows' parameters as one validated model each: `RunRequest` (flow `wmtp`) and `CompareRequest`
(flow `wmtp-compare`).

Each flow takes its request as its only parameter. Prefect validates it (a dict from a deployment or
`--param request='{...}'` is coerced into the model; an unknown key or a bad value fails the run before it
starts) and shows its fields in the UI and in the deployment's parameter schema. A request given at run time
replaces the deployment's whole `request` (Prefect merges parameters by top-level name): fields left out take the
defaults below, so a run of a deployment names its `experiment` (required) and, to keep the upload, its
`upload_target` again.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from wmtp_core.eval.compare import run_seeds
from wmtp_core.experiments import EXPERIMENTS, ExperimentName


class RunSettings(BaseModel):
    """What every run of the flows shares: preset, models, infrastructure, eval, upload, storage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = "smoke"  # configs/presets/<name>.yaml
    use_micro_model: bool = True
    dataset_suffix: str | None = "small"
    base_checkpoint: str | None = None  # a Meta-format checkpoint or converted model dir; None: real or synthetic
    infrastructure: str = "local"  # "local" or a saved VesslJob block name
    device: str = "cpu"
    eval_dataset: str = "mbpp"
    eval_limit: int | None = 4
    eval_n: int = 1
    eval_max_new_tokens: int = 64
    eval_temperature: float = Field(default=0.2, ge=0.0)  # 0: greedy decoding
    eval_speculative: bool = True  # greedy + a model with extra heads: self-speculative decoding (same outputs)
    upload_target: str | None = None  # a directory, volume://…, "local-volume", or None (no upload)
    micro_plan: str = "default"
    train_overrides: list[str] = Field(default_factory=list)  # `wmtp train --set` KEY=VALUE for every stage
    storage_root: str | None = None  # every location under this directory instead of storage/ (tests)


class RunRequest(RunSettings):
    experiment: ExperimentName
    seed: int | None = None  # the training seed (run.seed) and eval sampling seed; None: the config's (eval: 0)

    @property
    def label(self) -> str:
        return self.experiment if self.seed is None else f"{self.experiment}-s{self.seed}"

    @property
    def overrides(self) -> list[str]:
        """`--set` overrides of every stage: the given ones, then the seed."""
        return [*self.train_overrides, *([f"run.seed={self.seed}"] if self.seed is not None else [])]

    @property
    def eval_decoding(self) -> dict:
        """The harness's decoding arguments: `speculative` None lets it decode speculatively when greedy and the
        model has extra heads; False turns that off."""
        return {"temperature": self.eval_temperature, "speculative": None if self.eval_speculative else False}


class CompareRequest(RunSettings):
    experiments: list[ExperimentName] | None = None  # None: every experiment of the registry
    seeds: int = Field(default=1, ge=1)  # training seeds per experiment (1: the config's; N > 1: run.seed 0..N-1)

    def runs(self) -> list[RunRequest]:
        """One RunRequest per (experiment, training seed), experiment-major, sharing every other field."""
        shared = self.model_dump(exclude={"experiments", "seeds"})
        return [RunRequest(**shared, experiment=e, seed=s)
                for e in (self.experiments or list(EXPERIMENTS)) for s in run_seeds(self.seeds)]
