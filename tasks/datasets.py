"""Step: raw sources -> processed splits -> validated, with a SHA256 manifest (`wmtp_core.data.api`)."""

from __future__ import annotations

from pathlib import Path

from tasks._task import wmtp_task
from tasks.results import DatasetsArtifact


@wmtp_task("prepare-validate-datasets", kind="io")
def prepare_and_validate(datasets_root: str, sources: list[str], tokenizer_model: Path, max_tokens: int,
                         source_dirs: list[Path]) -> DatasetsArtifact:
    """`source_dirs` (datasets_root/<source>/source) are listed so the cache key follows the raw inputs."""
    from wmtp_core.data.api import prepare_and_validate as run

    result = run(Path(datasets_root), sources, tokenizer_model, max_tokens=max_tokens)
    print(f"datasets validated: manifest {result.manifest_path} sha256 {result.manifest_sha256}")
    return DatasetsArtifact(Path(datasets_root), Path(result.manifest_path), result.manifest_sha256, result.counts)
