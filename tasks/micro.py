"""Step: slice the base model into the micro model `--use-micro-model` loads (`wmtp_core.artifacts.micro`)."""

from __future__ import annotations

from pathlib import Path

from tasks._task import wmtp_task
from tasks.results import ModelArtifact, model_artifact


@wmtp_task("build-micro")
def build_micro(base: ModelArtifact, out_dir: str, tokenizer_model: Path, plan: str = "default",
                seed: int = 0, ffn_hidden_dim: int | None = None) -> ModelArtifact:
    """`plan`: a name in wmtp_core.artifacts.micro.PLANS ("default": the design's dim-512 micro; "tiny": tests),
    optionally with another FFN width. A different model already at `out_dir` is replaced (this step only runs
    when its inputs changed)."""
    from wmtp_core.artifacts.micro import PLANS, build_micro_model

    width = {"ffn_hidden_dim": ffn_hidden_dim} if ffn_hidden_dim else {}
    result = build_micro_model(base.model_dir, out_dir, tokenizer_model=tokenizer_model,
                               plan=PLANS[plan](seed=seed, **width), force=True)
    print(result.message)
    return model_artifact(Path(result.out_dir), result.message)
