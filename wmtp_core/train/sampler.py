"""Deterministic, resumable order over dataset rows: the position is state, never re-derived from scratch.

Epoch e visits rows in `randperm(n, seed + e)` order (or 0..n-1 without shuffling). A micro-batch is the next
`batch_size` positions; it may span an epoch boundary, so no row is dropped. `state_dict()` is (epoch, cursor);
`load_state_dict` continues from exactly there. Sharding for several ranks: rank r takes every world-th batch.
"""

from __future__ import annotations

import torch


class ResumableSampler:
    def __init__(self, n_rows: int, batch_size: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        if n_rows <= 0:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n_rows, self.batch_size, self.seed, self.shuffle = n_rows, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.cursor = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n_rows))
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.n_rows, generator=gen).tolist()

    def _take(self) -> int:
        if self.cursor == self.n_rows:
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        row = self._order[self.cursor]
        self.cursor += 1
        return row

    def next_indices(self) -> list[int]:
        """Row indices of this rank's next micro-batch (the other ranks' batches are skipped over)."""
        mine: list[int] = []
        for r in range(self.world_size):
            batch = [self._take() for _ in range(self.batch_size)]
            if r == self.rank:
                mine = batch
        return mine

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "n_rows": self.n_rows, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["n_rows"] != self.n_rows or state["seed"] != self.seed:
            raise ValueError(f"sampler state is for {state['n_rows']} rows / seed {state['seed']}, "
                             f"this dataset has {self.n_rows} rows / seed {self.seed}")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._epoch_order(self.epoch)
