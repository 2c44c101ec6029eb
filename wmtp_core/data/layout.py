"""Where each dataset file lives: storage/datasets/<source>/{source,raw_extra,raw,processed,processed_incorrect}/.

`raw_extra/*.jsonl` holds extra raw-schema rows (e.g. `wmtp make-negatives` / `wmtp label` output) that join the
rows converted from `source/`; a `*.mutations.jsonl` file there is a sidecar (one note per row), not rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SPLIT_FILES = ("train", "validation", "test", "train_small", "validation_small")
BUCKETS = ("processed", "processed_incorrect")
MANIFEST_NAME = "manifest.json"
SETTINGS_NAME = "prepare.json"
SIDECAR_SUFFIX = ".mutations.jsonl"


def display_path(path: Path) -> str:
    """Path as reported in messages: relative to the working directory when below it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


@dataclass(frozen=True)
class SourceLayout:
    root: Path  # datasets root
    source: str

    @property
    def dir(self) -> Path:
        return self.root / self.source

    @property
    def source_dir(self) -> Path:
        return self.dir / "source"

    @property
    def raw_extra_dir(self) -> Path:
        return self.dir / "raw_extra"

    def raw_extra_files(self) -> list[Path]:
        """Extra raw-row files, sorted by name (sidecars excluded)."""
        if not self.raw_extra_dir.is_dir():
            return []
        return sorted(p for p in self.raw_extra_dir.glob("*.jsonl") if not p.name.endswith(SIDECAR_SUFFIX))

    def raw_extra_inputs(self) -> list[Path]:
        """Every `*.jsonl` under raw_extra/ (rows and sidecars), as recorded in the manifest."""
        if not self.raw_extra_dir.is_dir():
            return []
        return sorted(p for p in self.raw_extra_dir.glob("*.jsonl") if p.is_file())

    @property
    def raw_file(self) -> Path:
        return self.dir / "raw" / f"{self.source}.jsonl"

    @property
    def rejects_file(self) -> Path:
        return self.dir / "rejects.jsonl"

    def split_file(self, split: str, suffix: str | None = None, incorrect: bool = False) -> Path:
        name = f"{split}_{suffix}" if suffix else split
        return self.dir / BUCKETS[int(incorrect)] / f"{name}.jsonl"

    def relative(self, path: Path) -> str:
        """`path` relative to the datasets root (how prepare-data names files in messages and rejects)."""
        return path.relative_to(self.root).as_posix()

    def output_files(self) -> list[Path]:
        return [self.raw_file] + [self.dir / b / f"{s}.jsonl" for b in BUCKETS for s in SPLIT_FILES]
