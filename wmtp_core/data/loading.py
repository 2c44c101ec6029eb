"""Processed JSONL -> Hugging Face `datasets.Dataset` (cached under <datasets_root>/.cache)."""

from __future__ import annotations

from pathlib import Path

from wmtp_core.data.errors import DatasetError
from wmtp_core.data.layout import SPLIT_FILES, SourceLayout, display_path


def _features():
    from datasets import Features, Value

    meta = {
        "task_id": Value("string"),
        "source": Value("string"),
        "is_correct": Value("bool"),
        "has_tests": Value("bool"),
    }
    return Features({"prompt": Value("string"), "response": Value("string"), "metadata": meta})


def processed_files(
    datasets_root: Path, sources: list[str], split: str, suffix: str | None, include_incorrect: bool
) -> list[Path]:
    name = f"{split}_{suffix}" if suffix else split
    if name not in SPLIT_FILES:
        raise ValueError(f"split/suffix: {name!r} is not one of {list(SPLIT_FILES)}")
    files = []
    for source in sources:
        layout = SourceLayout(datasets_root, source)
        for incorrect in (False, True) if include_incorrect else (False,):
            path = layout.split_file(split, suffix, incorrect)
            if not path.is_file():
                raise DatasetError(f"{display_path(path)}: not found (run `wmtp prepare-data`)")
            files.append(path)
    return files


def load_processed(
    datasets_root: Path,
    sources: list[str],
    split: str,
    suffix: str | None = None,
    include_incorrect: bool = False,
):
    """Rows {prompt, response, metadata{task_id, source, is_correct, has_tests}} of the given split files."""
    import datasets

    files = [
        p
        for p in processed_files(Path(datasets_root), sources, split, suffix, include_incorrect)
        if p.stat().st_size > 0
    ]
    if not files:
        return datasets.Dataset.from_dict(
            {"prompt": [], "response": [], "metadata": []}, features=_features()
        )
    return datasets.load_dataset(
        "json",
        data_files=[str(p) for p in files],
        features=_features(),
        split="train",
        cache_dir=str(Path(datasets_root) / ".cache"),
    )
