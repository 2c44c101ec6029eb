"""Deterministic SentencePiece training of the project's 8000-piece code tokenizer (wmtp train-tokenizer)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from wmtp_core.data.corpus import corpus_lines
from wmtp_core.io import atomic_write_bytes


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_size: int = 8000
    model_type: str = "bpe"  # "bpe" or "unigram"
    character_coverage: float = 1.0


def trainer_options(spec: TokenizerSpec) -> dict[str, object]:
    """LLaMA conventions (unk 0, <s> 1, </s> 2, no pad, byte fallback) plus settings that keep code intact."""
    if spec.model_type not in ("bpe", "unigram"):
        raise ValueError(f"model_type: expected 'bpe' or 'unigram', got {spec.model_type!r}")
    return dict(
        vocab_size=spec.vocab_size,
        model_type=spec.model_type,
        character_coverage=spec.character_coverage,
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        max_sentence_length=16384,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
    )


def train_tokenizer_bytes(lines: list[str], spec: TokenizerSpec = TokenizerSpec()) -> bytes:
    """Serialized SentencePiece model trained on `lines` (same lines + spec -> same bytes)."""
    import sentencepiece as spm

    spm.set_random_generator_seed(0)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **trainer_options(spec))
    return buf.getvalue()


def train_code_tokenizer(datasets_root: Path, out_path: Path, spec: TokenizerSpec = TokenizerSpec()) -> Path:
    """Train on the shipped code corpus under `datasets_root` and write the model atomically to `out_path`."""
    model = train_tokenizer_bytes(list(corpus_lines(datasets_root)), spec)
    atomic_write_bytes(out_path, model)
    return out_path
