"""Step: slice the base model into the micro model `--use-micro-model` loads (`wmtp_core.artifacts.micro`)."""

from __future__ import annotations

from pathlib import Path

from tasks._task import wmtp_task
from tasks.results import ModelArtifact, model_artifact


@wmtp_task("build-micro")
def build_micro(base: ModelArtifact, out_dir: str, tokenizer_model: Path, seed: int = 0) -> ModelArtifact:
    from wmtp_core.artifacts.micro import MicroPlan, build_micro_model

    result = build_micro_model(base.model_dir, out_dir, tokenizer_model=tokenizer_model, plan=MicroPlan(seed=seed),
                               force=True)
    print(result.message)
    return model_artifact(Path(out_dir), result.message)
