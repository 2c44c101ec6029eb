"""Row-level problems reported as `file:line: field: reason` (and written to a rejects file)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RowError:
    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"

    def to_json(self, stage: str) -> dict:
        return {"stage": stage, **asdict(self), "message": str(self)}


class DatasetError(RuntimeError):
    """A required file is missing or unreadable as a whole (the command exits non-zero)."""
