"""The Alpaca-style SFT prompt template (exact text; golden-tested) and the response format."""

from __future__ import annotations

from wmtp_core.data.schema import EOS_TEXT

EVALUATION_NOTES = (
    "### Evaluation Notes:\n"
    "- Return Python source code that prints the required answer.\n"
    "- Hidden tests are present; rely on the stated constraints rather than memorising samples.\n"
)


def build_prompt(instruction: str, normalized_input: str) -> str:
    """The prompt, ending with "### Response:\\n"; the Input block is omitted when the input is empty."""
    parts = [f"### Instruction:\n{instruction}\n"]
    if normalized_input.strip():
        parts.append(f"### Input:\n{normalized_input}\n")
    parts.append(EVALUATION_NOTES)
    parts.append("### Response:\n")
    return "\n".join(parts)


def build_response(code: str) -> str:
    """Code (no markdown fences) followed by the EOS marker, which tokenization maps to the EOS id."""
    return code + EOS_TEXT
