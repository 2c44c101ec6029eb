"""SentencePiece tokenizer wrapper with LLaMA conventions (bos/eos/pad ids, piece lookup)."""

from __future__ import annotations

from pathlib import Path

from sentencepiece import SentencePieceProcessor

EOS_TEXT = "</s>"


class Tokenizer:
    def __init__(self, model_path: str | Path) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: tokenizer model not found")
        self.sp = SentencePieceProcessor(model_file=str(self.model_path))
        self.n_words: int = self.sp.vocab_size()
        self.bos_id: int = self.sp.bos_id()
        self.eos_id: int = self.sp.eos_id()
        # LLaMA tokenizers have no pad piece (pad_id == -1); padding then uses eos, always masked out.
        self.pad_id: int = self.sp.pad_id() if self.sp.pad_id() >= 0 else self.eos_id
        if self.eos_id < 0:
            raise ValueError(f"{self.model_path}: tokenizer has no EOS piece")

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids: list[int] = self.sp.encode(text)
        return ([self.bos_id] if bos and self.bos_id >= 0 else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if 0 <= i < self.n_words])

    def piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    def piece_to_id(self, piece: str) -> int | None:
        """Id of `piece`, or None when the vocabulary lacks it (SentencePiece maps unknowns to unk)."""
        idx = self.sp.piece_to_id(piece)
        return None if idx == self.sp.unk_id() and piece != self.sp.id_to_piece(idx) else idx

    def pieces(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.n_words)]
