"""Training batches: DATA's `load_processed` rows, encoded lazily and collated by `MTPCollator`, in the order of
a `ResumableSampler` (whose position is checkpointed, so a resumed run sees exactly the remaining batches)."""

from __future__ import annotations

import math
from typing import Any

import torch

from wmtp_core.config import ResolvedConfig
from wmtp_core.train.sampler import ResumableSampler


def load_rows(cfg: ResolvedConfig, include_incorrect: bool) -> Any:
    """The configured split of every configured source (plus processed_incorrect rows when asked)."""
    from wmtp_core.data.loading import load_processed

    rows = load_processed(cfg.resolved_path("datasets_root"), list(cfg.data.sources), cfg.data.split,
                          suffix=cfg.data.suffix, include_incorrect=include_incorrect)
    if len(rows) == 0:
        from wmtp_core.data.errors import DatasetError
        from wmtp_core.data.layout import display_path
        from wmtp_core.data.loading import processed_files

        files = processed_files(cfg.resolved_path("datasets_root"), list(cfg.data.sources), cfg.data.split,
                                cfg.data.suffix, include_incorrect=include_incorrect)
        listing = "; ".join(f"{display_path(f)}: {_count_lines(f)} rows" for f in files)
        raise DatasetError(f"data: no rows for sources {list(cfg.data.sources)} split {cfg.data.split!r} "
                           f"suffix {cfg.data.suffix!r} in {cfg.resolved_path('datasets_root')} ({listing}); "
                           f"run `wmtp prepare-data` or choose data.sources / data.split / data.suffix that hold rows")
    if include_incorrect:
        check_both_classes(cfg, rows)
    return rows


def check_both_classes(cfg: ResolvedConfig, rows: Any) -> None:
    """Stage 1 learns V from the terminal reward of correct AND incorrect rows; with one class the critic only learns
    a constant. Raises a DatasetError naming every file read, its row count and the class counts."""
    from wmtp_core.data.errors import DatasetError
    from wmtp_core.data.layout import display_path
    from wmtp_core.data.loading import processed_files

    per_source = {source: [0, 0] for source in cfg.data.sources}  # source -> [incorrect, correct]
    for meta in rows["metadata"]:
        per_source.setdefault(meta["source"], [0, 0])[bool(meta["is_correct"])] += 1
    n_incorrect, n_correct = (sum(c[i] for c in per_source.values()) for i in (0, 1))
    lacking = [s for s, (bad, good) in per_source.items() if not (bad and good)]
    if not lacking:
        return
    files = processed_files(cfg.resolved_path("datasets_root"), list(cfg.data.sources), cfg.data.split,
                            cfg.data.suffix, include_incorrect=True)
    listing = "; ".join(f"{display_path(f)}: {_count_lines(f)} rows" for f in files)
    if n_correct and n_incorrect:  # one source with a single class: the critic could learn the source, not the reward
        counts = ", ".join(f"{s}: {good} correct / {bad} incorrect" for s, (bad, good) in per_source.items())
        raise DatasetError(f"stage1 needs correct and incorrect rows from every source in data.sources, "
                           f"{', '.join(lacking)} has only one class ({counts}) in {listing}; a critic could learn "
                           f"which source a row came from instead of its reward: add that source's negatives "
                           f"(`wmtp make-negatives` / `wmtp label`) or drop it from data.sources")
    missing = "incorrect" if n_correct else "correct"
    raise DatasetError(f"stage1 needs correct and incorrect rows, got {n_correct} correct and {n_incorrect} "
                       f"incorrect (no {missing} rows) in {listing}; run `wmtp make-negatives` / `wmtp label` or "
                       f"choose sources whose processed_incorrect files hold rows")


def _count_lines(path: Any) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def check_prompt_budget(cfg: ResolvedConfig, tokenizer: Any) -> None:
    """Before step 1: every training prompt (BOS included) must leave `data.max_len` room for a response token;
    else a DatasetError naming the field, the longest prompt and the length needed (not a failure mid-run)."""
    from wmtp_core.data.errors import DatasetError

    rows = load_rows(cfg, include_incorrect="stage1" in cfg.stages)
    longest, task = 0, ""
    for prompt, meta in zip(rows["prompt"], rows["metadata"], strict=True):
        n = len(tokenizer.encode(prompt, bos=True))
        if n > longest:
            longest, task = n, meta["task_id"]
    if longest >= cfg.data.max_len:
        raise DatasetError(f"data.max_len: {cfg.data.max_len} is below the prompt budget of the training rows: the "
                           f"prompt of {task} has {longest} tokens (+1 response token needed); set data.max_len >= "
                           f"{longest + 1} or drop the sources with long prompts")


def steps_for(n_rows: int, epochs: float, batch_size: int, grad_accum: int, max_steps: int | None,
              world_size: int = 1) -> int:
    """Optimizer steps covering `epochs` passes over `n_rows` (at least 1), capped by `max_steps`."""
    per_step = batch_size * grad_accum * world_size
    steps = max(1, math.ceil(epochs * n_rows / per_step))
    return min(steps, max_steps) if max_steps is not None else steps


class BatchSource:
    """`next_batch()` -> MTPCollator dict with tensors on `device` (rows encoded once, on first use)."""

    def __init__(self, rows: Any, tokenizer: Any, max_len: int, n_future: int, sampler: ResumableSampler,
                 device: torch.device) -> None:
        from wmtp_core.data.collate import MTPCollator

        self.rows, self.tokenizer, self.max_len = rows, tokenizer, max_len
        self.sampler, self.device = sampler, device
        self.collate = MTPCollator(pad_id=tokenizer.pad_id, n_future=n_future)
        self._encoded: dict[int, dict[str, Any]] = {}

    def encoded(self, index: int) -> dict[str, Any]:
        if index not in self._encoded:
            from wmtp_core.data.collate import encode_example

            self._encoded[index] = encode_example(self.tokenizer, self.rows[index], self.max_len)
        return self._encoded[index]

    def batch_for(self, indices: list[int]) -> dict[str, Any]:
        batch = self.collate([self.encoded(i) for i in indices])
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def next_batch(self) -> dict[str, Any]:
        return self.batch_for(self.sampler.next_indices())
