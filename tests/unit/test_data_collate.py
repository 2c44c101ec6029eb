"""encode_example (EOS mapping) and MTPCollator label/mask boundaries against a plain-loop reference."""

from __future__ import annotations

import pytest
import torch
from fixtures.data import processed_row

from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core import paths
from wmtp_core.data.collate import IGNORE, MTPCollator, encode_example

TOKENIZERS = [paths.CODE_TOKENIZER, paths.MISTRAL_TOKENIZER]


def _example(ids: list[int], start: int, task: str = "1_A", correct: bool = True) -> dict:
    return {
        "input_ids": ids,
        "response_start": start,
        "is_correct": correct,
        "task_id": task,
        "source": "mbpp",
    }


def reference_labels(examples: list[dict], n_future: int, seq: int) -> list[list[list[int]]]:
    out = []
    for e in examples:
        n, start = len(e["input_ids"]), e["response_start"]
        rows = []
        for t in range(seq):
            heads = []
            for k in range(n_future):
                j = t + k + 1
                heads.append(e["input_ids"][j] if j < n and j >= start else IGNORE)
            rows.append(heads)
        out.append(rows)
    return out


@pytest.mark.parametrize("model", TOKENIZERS, ids=lambda p: p.name)
def test_trailing_eos_marker_becomes_the_eos_id(model) -> None:
    tok = Tokenizer(model)
    row = processed_row(code="print('</s>')")
    enc = encode_example(tok, row, 512)
    ids = enc["input_ids"]
    assert ids[0] == tok.bos_id
    assert ids[-1] == tok.eos_id
    assert ids.count(tok.eos_id) == 1  # the "</s>" inside the code stays plain text
    response = ids[enc["response_start"] :]
    assert tok.decode(response[:-1]) == "print('</s>')"
    assert ids[: enc["response_start"]] == tok.encode(row["prompt"], bos=True)


@pytest.mark.parametrize("model", TOKENIZERS, ids=lambda p: p.name)
def test_eos_marker_text_never_appears_as_pieces(model) -> None:
    tok = Tokenizer(model)
    enc = encode_example(tok, processed_row(code="x = 1"), 512)
    tail_text = "".join(tok.piece(i) for i in enc["input_ids"][-4:])
    assert "</s>" not in tail_text.replace(tok.piece(tok.eos_id), "")


def test_response_without_marker_is_rejected() -> None:
    row = processed_row()
    row["response"] = "print(1)"
    with pytest.raises(ValueError, match="does not end with '</s>'"):
        encode_example(Tokenizer(paths.CODE_TOKENIZER), row, 512)


def test_max_len_cuts_the_response_and_a_too_long_prompt_is_an_error() -> None:
    tok = Tokenizer(paths.CODE_TOKENIZER)
    full = encode_example(tok, processed_row(code="print(1)\n" * 20), 4096)
    cut = encode_example(tok, processed_row(code="print(1)\n" * 20), full["response_start"] + 3)
    assert cut["input_ids"] == full["input_ids"][: full["response_start"] + 3]
    with pytest.raises(ValueError, match="prompt has"):
        encode_example(tok, processed_row(), full["response_start"])


def test_collator_matches_reference_and_pads_to_longest() -> None:
    examples = [
        _example([1, 10, 11, 12, 13, 14, 2], 3),
        _example([1, 20, 21, 2], 2, "2_B", False),
        _example([1, 30, 2], 1, "3_C"),
    ]
    batch = MTPCollator(pad_id=0, n_future=4)(examples)
    assert batch["input_ids"].shape == (3, 7)  # longest in the batch, not a fixed max
    assert batch["labels"].shape == (3, 7, 4)
    assert batch["labels"].tolist() == reference_labels(examples, 4, 7)
    assert batch["input_ids"][1].tolist() == [1, 20, 21, 2, 0, 0, 0]
    assert batch["attention_mask"][1].tolist() == [True] * 4 + [False] * 3
    assert batch["response_mask"][0].tolist() == [False] * 3 + [True] * 4
    assert batch["is_correct"].tolist() == [1.0, 0.0, 1.0]
    assert batch["task_id"] == ["1_A", "2_B", "3_C"] and batch["source"] == ["mbpp"] * 3


def test_label_boundaries() -> None:
    ids = [1, 5, 6, 7, 8, 9, 2]  # prompt = [1, 5, 6], response = [7, 8, 9, 2]
    labels = MTPCollator(pad_id=0, n_future=3)([_example(ids, 3), _example([1, 4, 2], 1)])["labels"][0]
    # head k at t -> token t+k+1
    assert labels[2, 0] == 7 and labels[1, 1] == 7 and labels[0, 2] == 7
    assert labels[3, 0] == 8 and labels[3, 1] == 9 and labels[3, 2] == 2
    # prompt tokens are never labels
    prompt_ids = {1, 5, 6}
    assert not any(v in prompt_ids for v in labels.flatten().tolist())
    # labels crossing the sequence end are ignored
    assert labels[6].tolist() == [IGNORE] * 3
    assert labels[5].tolist() == [2, IGNORE, IGNORE]
    assert labels[4].tolist() == [9, 2, IGNORE]


def test_padding_never_becomes_a_label_even_when_pad_equals_eos() -> None:
    examples = [_example([1, 7, 2], 1), _example([1, 7, 8, 9, 10, 2], 1)]
    batch = MTPCollator(pad_id=2, n_future=4)(examples)
    labels = batch["labels"][0]
    assert (labels[2:] == IGNORE).all()
    assert labels[1].tolist() == [2, IGNORE, IGNORE, IGNORE]
    assert int((batch["labels"] != IGNORE).sum()) == sum(
        1 for ex in reference_labels(examples, 4, 6) for row in ex for v in row if v != IGNORE
    )


def test_n_future_longer_than_sequence_and_bad_n_future() -> None:
    batch = MTPCollator(pad_id=0, n_future=5)([_example([1, 7, 2], 1)])
    assert batch["labels"].tolist() == reference_labels([_example([1, 7, 2], 1)], 5, 3)
    with pytest.raises(ValueError):
        MTPCollator(pad_id=0, n_future=0)


def test_random_batches_match_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        examples = []
        for _ in range(int(torch.randint(1, 5, (1,), generator=gen))):
            n = int(torch.randint(2, 12, (1,), generator=gen))
            start = int(torch.randint(1, n, (1,), generator=gen))
            examples.append(_example(torch.randint(3, 50, (n,), generator=gen).tolist(), start))
        seq = max(len(e["input_ids"]) for e in examples)
        batch = MTPCollator(pad_id=0, n_future=4)(examples)
        assert batch["labels"].tolist() == reference_labels(examples, 4, seq)
