"""A light SentencePiece wrapper with the vendor Tokenizer's interface (encode/decode/bos_id/eos_id/pad_id).

The data pipeline measures lengths with it so `prepare-data` does not import torch (importing the
`vendor.meta_llama` package loads the model module). Ids and pieces are identical to the vendor Tokenizer's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sentencepiece import SentencePieceProcessor


class TokenizerLike(Protocol):
    """What the data code needs from a tokenizer (SpTokenizer and vendor.meta_llama Tokenizer both fit)."""

    bos_id: int
    eos_id: int

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class SpTokenizer:
    def __init__(self, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: tokenizer model not found")
        self.sp = SentencePieceProcessor(model_file=str(self.model_path))
        self.bos_id: int = self.sp.bos_id()
        self.eos_id: int = self.sp.eos_id()
        if self.eos_id < 0:
            raise ValueError(f"{self.model_path}: tokenizer has no EOS piece")
        self.pad_id: int = self.sp.pad_id() if self.sp.pad_id() >= 0 else self.eos_id

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids: list[int] = self.sp.encode(text)
        return ([self.bos_id] if bos and self.bos_id >= 0 else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if 0 <= i < self.sp.vocab_size()])
