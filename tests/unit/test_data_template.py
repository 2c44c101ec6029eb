"""Golden tests for the exact SFT prompt text and response format."""

from __future__ import annotations

from fixtures.data import raw_row

from vendor.meta_llama.tokenizer import Tokenizer
from wmtp_core import paths
from wmtp_core.data.prepare import Budget, process_row
from wmtp_core.data.template import build_prompt, build_response

GOLDEN_WITH_INPUT = """### Instruction:
Add two numbers.

### Input:
Input format:
a b

### Evaluation Notes:
- Return Python source code that prints the required answer.
- Hidden tests are present; rely on the stated constraints rather than memorising samples.

### Response:
"""

GOLDEN_NO_INPUT = """### Instruction:
Add two numbers.

### Evaluation Notes:
- Return Python source code that prints the required answer.
- Hidden tests are present; rely on the stated constraints rather than memorising samples.

### Response:
"""


def test_prompt_with_input_is_exact() -> None:
    assert build_prompt("Add two numbers.", "Input format:\na b") == GOLDEN_WITH_INPUT


def test_input_block_is_omitted_when_input_is_empty_or_blank() -> None:
    assert build_prompt("Add two numbers.", "") == GOLDEN_NO_INPUT
    assert build_prompt("Add two numbers.", " \n") == GOLDEN_NO_INPUT


def test_response_is_code_then_eos_marker() -> None:
    assert build_response("print(1)") == "print(1)</s>"


def test_codecontests_row_golden() -> None:
    budget = Budget(Tokenizer(paths.CODE_TOKENIZER), 2048)
    out = process_row(raw_row(), "codecontests", budget).row
    assert out is not None
    assert out["prompt"] == (
        "### Instruction:\nPrint the sum of two integers.\n\n"
        "### Input:\nInput format:\nTwo integers a b (1 ≤ a, b ≤ 10).\n\nOutput format:\nPrint a + b.\n\n"
        "Example 1:\nInput:\n1 2\nOutput:\n3\n\nExample 2:\nInput:\n4 5\nOutput:\n9\n\n"
        "### Evaluation Notes:\n"
        "- Return Python source code that prints the required answer.\n"
        "- Hidden tests are present; rely on the stated constraints rather than memorising samples.\n\n"
        "### Response:\n"
    )
    assert out["response"] == "a, b = map(int, input().split())\nprint(a + b)</s>"
    assert out["metadata"] == {
        "task_id": "1000_A",
        "source": "codecontests",
        "is_correct": True,
        "has_tests": True,
    }


def test_mbpp_row_golden_shows_at_most_two_asserts() -> None:
    row = raw_row(
        instruction="Write a function to add.",
        input="assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(2, 2) == 4",
        output="def add(a, b):\n    return a + b",
        task_id="mbpp-7_A",
        test_cases={},
    )
    out = process_row(row, "mbpp", Budget(Tokenizer(paths.CODE_TOKENIZER), 2048)).row
    assert out is not None
    assert out["prompt"].startswith(
        "### Instruction:\nWrite a function to add.\n\n### Input:\nYour code should pass tests like:\n"
        "assert add(1, 2) == 3\nassert add(0, 0) == 0\n\n### Evaluation Notes:\n"
    )
    assert "add(2, 2)" not in out["prompt"]
    assert out["metadata"]["has_tests"] is False
