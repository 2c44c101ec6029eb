"""Where one flow run reads and writes: the standard storage/ locations, or all of them under another root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wmtp_core import paths

# upload_target value meaning "the local stand-in for a volume", <storage>/runs/_volume (the deployments' default)
LOCAL_VOLUME = "local-volume"


@dataclass(frozen=True)
class Locations:
    storage: Path
    datasets_root: Path
    base_dir: Path  # converted real base (paths.BASE_MODEL_DIR)
    synthetic_source: Path  # synthetic Meta-format checkpoint, when no real base exists
    synthetic_base_dir: Path  # its conversion (kept apart from the real base location)
    micro_dir: Path
    reference_dir: Path  # a converted Rho-1 reference (paths.REFERENCE_MODEL_DIR)
    micro_reference_dir: Path  # the micro-world Rho-1 reference (paths.MICRO_REFERENCE_DIR)
    runs_dir: Path
    eval_dir: Path

    @classmethod
    def under(cls, storage_root: str | Path | None) -> Locations:
        if storage_root is None:
            storage, models = paths.STORAGE, paths.MODELS_ROOT
            base, micro, ref = paths.BASE_MODEL_DIR, paths.MICRO_MODEL_DIR, paths.REFERENCE_MODEL_DIR
            micro_ref = paths.MICRO_REFERENCE_DIR
            datasets, runs = paths.DATASETS_ROOT, paths.RUNS_ROOT
        else:
            storage = Path(storage_root).resolve()
            models = storage / "models"
            base, micro = models / paths.BASE_MODEL_DIR.name, models / paths.MICRO_MODEL_DIR.name
            ref, micro_ref = models / paths.REFERENCE_MODEL_DIR.name, models / paths.MICRO_REFERENCE_DIR.name
            datasets, runs = storage / "datasets", storage / "runs"
        return cls(storage, datasets, base, storage / "cache" / "synthetic-meta-base",
                   models / "synthetic-meta-llama-mtp", micro, ref, micro_ref, runs, runs / "eval")

    @property
    def volume_dir(self) -> Path:
        """The local directory standing in for a storage volume."""
        return self.runs_dir / "_volume"

    def upload_destination(self, upload_target: str | None) -> str | None:
        """Where the upload step writes: None (no upload), the local volume stand-in, or the target as given."""
        return str(self.volume_dir) if upload_target == LOCAL_VOLUME else (upload_target or None)

    def source_dirs(self, sources: list[str]) -> list[Path]:
        """Every dataset input the prepare step reads (hashed into its cache key): the shipped source files, the
        extra raw rows (verified negatives, labelled generations) and the reference-check flags."""
        inputs = []
        for s in sources:
            root = self.datasets_root / s
            inputs += [root / "source", root / "raw_extra", root / "unreliable.json"]
        return [p for p in inputs if p.exists()]
