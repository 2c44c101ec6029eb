"""Step: a Meta-format checkpoint -> the project's model layout (`wmtp_core.artifacts.convert`)."""

from __future__ import annotations

from pathlib import Path

from tasks._task import wmtp_task
from tasks.results import ModelArtifact, model_artifact


@wmtp_task("convert-checkpoint", kind="io")
def convert_checkpoint(source_dir: Path, out_dir: str) -> ModelArtifact:
    from wmtp_core.artifacts.convert import convert_meta_checkpoint

    result = convert_meta_checkpoint(source_dir, out_dir)
    print(result.message)
    return model_artifact(result.out_dir, result.message)


@wmtp_task("synthetic-base")
def synthetic_base(out_dir: str, tokenizer_model: Path, seed: int = 0) -> Path:
    """No real base checkpoint: write a random Meta-format one (marked synthetic in everything derived from it)."""
    from wmtp_core.artifacts.micro import write_synthetic_base

    print(f"NOTICE: no real base checkpoint; writing a SYNTHETIC Meta-format base to {out_dir} (random weights)")
    return Path(write_synthetic_base(out_dir, tokenizer_model, seed=seed))
