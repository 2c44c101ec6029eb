"""Length budget: shorten (examples, then description) and re-measure; reject code that cannot fit."""

from __future__ import annotations

import pytest
from fixtures.data import raw_row

from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core import paths
from wmtp_core.data.prepare import Budget, process_row

TOK = Tokenizer(paths.CODE_TOKENIZER)
LONG_LEGEND = "\n\n".join(
    f"Paragraph {i}: " + "the quick brown fox jumps over the lazy dog " * 6 for i in range(5)
)
STATEMENT = (
    LONG_LEGEND + "\n\nInput\n\nOne integer n (1 ≤ n ≤ 100).\n\nOutput\n\nPrint n.\n\nExamples\n\n"
    "Input\n\n" + "1 " * 60 + "\n\n\nOutput\n\n1\n\n\nInput\n\n" + "2 " * 60 + "\n\n\nOutput\n\n2\n"
)


def _total(out: dict) -> int:
    return len(TOK.encode(out["prompt"], bos=True)) + len(TOK.encode(out["response"][:-4])) + 1


def _fit(max_tokens: int, code: str = "print(input())", allow: bool = False):
    return process_row(
        raw_row(instruction=STATEMENT, output=code), "codecontests", Budget(TOK, max_tokens, allow)
    )


def test_full_prompt_when_it_fits() -> None:
    res = _fit(4096)
    assert res.row is not None and not res.shortened
    assert "Example 2:" in res.row["prompt"] and "Paragraph 4" in res.row["prompt"]


def test_examples_are_dropped_before_the_description() -> None:
    full = _total(_fit(4096).row)
    res = _fit(full - 20)
    assert res.shortened and res.row is not None
    assert "Example 1:" in res.row["prompt"] and "Example 2:" not in res.row["prompt"]
    assert "Paragraph 4" in res.row["prompt"]
    assert _total(res.row) <= full - 20


@pytest.mark.parametrize("max_tokens", [260, 200, 150, 110])
def test_shortened_rows_always_fit_and_keep_the_code(max_tokens) -> None:
    res = _fit(max_tokens)
    assert res.row is not None, res.reason
    assert _total(res.row) <= max_tokens
    assert res.row["response"] == "print(input())</s>"
    assert res.row["prompt"].startswith("### Instruction:\nParagraph 0:")


def test_code_that_cannot_fit_is_rejected_with_reason() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(200))
    res = _fit(256, code)
    assert res.row is None
    n_code = len(TOK.encode(code)) + 1
    assert res.reason.startswith(f"code alone needs {n_code} tokens (with EOS); with the shortest prompt (")
    assert res.reason.endswith("> max_tokens=256")


def test_truncation_only_when_allowed() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(200))
    res = _fit(256, code, allow=True)
    assert res.truncated and res.row is not None
    assert _total(res.row) <= 256
    assert code.startswith(res.row["response"][:-4])
