"""Raw rows -> processed (Alpaca SFT) rows within a token budget.

Length rule: BOS + prompt + code + EOS <= max_tokens (measured with the given tokenizer). A row that is too
long is shortened step by step and re-measured: 2 -> 1 -> 0 examples, then fewer legend paragraphs, then the
first paragraph and the I/O format cut to fewer words. When even the shortest prompt plus the code does not
fit, the row is rejected with the reason (truncated code would be a wrong "correct" answer) unless
`allow_truncation`, in which case the code is cut at a token boundary and the row is counted as truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from wmtp_core.data.description import looks_special_judge
from wmtp_core.data.prompt_parts import MAX_EXAMPLES, PARTS_BY_SOURCE, PromptParts, cut_words
from wmtp_core.data.sp import TokenizerLike
from wmtp_core.data.template import build_prompt, build_response

MIN_LEGEND_WORDS = 16


@dataclass(frozen=True)
class Budget:
    tokenizer: TokenizerLike
    max_tokens: int = 2048
    allow_truncation: bool = False

    def prompt_len(self, prompt: str) -> int:
        return len(self.tokenizer.encode(prompt, bos=True))

    def code_len(self, code: str) -> int:
        return len(self.tokenizer.encode(code)) + 1  # + EOS


@dataclass(frozen=True)
class Processed:
    row: dict | None
    reason: str = ""
    truncated: bool = False
    shortened: bool = False


def _largest_fitting(n: int, fits: Callable[[int], bool]) -> int:
    """Largest k in [1, n] with fits(k) (fits assumed monotone), or 0 when none fits."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _word_cut_candidates(parts: PromptParts, fits: Callable[[str, str], bool]) -> Iterator[tuple[str, str]]:
    first = parts.legend[0]
    ni = parts.normalized_input(0)
    k = _largest_fitting(len(first.split(" ")), lambda n: fits(cut_words(first, n), ni))
    if k:
        yield cut_words(first, k), ni
    short = cut_words(first, MIN_LEGEND_WORDS)
    io_words = len(parts.io_spec.split(" "))
    k = _largest_fitting(
        io_words, lambda n: fits(short, parts.normalized_input(0, cut_words(parts.io_spec, n)))
    )
    if k:
        yield short, parts.normalized_input(0, cut_words(parts.io_spec, k))
    yield short, ""


def prompt_candidates(parts: PromptParts, fits: Callable[[str, str], bool]) -> Iterator[tuple[str, str]]:
    """(instruction, normalized_input) from the fullest to the shortest; the last is the minimal prompt."""
    for n_ex in range(min(MAX_EXAMPLES, len(parts.examples)), -1, -1):
        yield parts.instruction(), parts.normalized_input(n_ex)
    for n_par in range(len(parts.legend) - 1, 0, -1):
        yield parts.instruction(n_par), parts.normalized_input(0)
    yield from _word_cut_candidates(parts, fits)


def has_tests(row: dict, source: str, untrusted: frozenset[str] = frozenset()) -> bool:
    """Exact-match stdin/stdout tests exist, the statement does not admit several answers / a tolerance, and
    the reference solution was not measured failing them (`untrusted`)."""
    tc = row["test_cases"]
    if not tc.get("input") or row["task_id"] in untrusted:
        return False
    return not (source == "codecontests" and looks_special_judge(row["instruction"]))


def _processed_row(prompt: str, code: str, row: dict, source: str, untrusted: frozenset[str]) -> dict:
    meta = {
        "task_id": row["task_id"],
        "source": source,
        "is_correct": row["is_correct"],
        "has_tests": has_tests(row, source, untrusted),
    }
    return {"prompt": prompt, "response": build_response(code), "metadata": meta}


def _truncate_code(code: str, budget: Budget, room: int) -> str:
    """The longest token prefix of `code` whose re-encoding (+ EOS) still fits in `room`."""
    ids = budget.tokenizer.encode(code)
    keep = room - 1
    text = budget.tokenizer.decode(ids[:keep])
    while keep > 0 and budget.code_len(text) > room:
        keep -= 1
        text = budget.tokenizer.decode(ids[:keep])
    return text


def process_row(row: dict, source: str, budget: Budget, untrusted: frozenset[str] = frozenset()) -> Processed:
    parts = PARTS_BY_SOURCE[source](row)
    code = row["output"]
    code_len = budget.code_len(code)

    def fits(instruction: str, normalized_input: str) -> bool:
        return budget.prompt_len(build_prompt(instruction, normalized_input)) + code_len <= budget.max_tokens

    prompt = ""
    for i, (instruction, ni) in enumerate(prompt_candidates(parts, fits)):
        prompt = build_prompt(instruction, ni)
        if budget.prompt_len(prompt) + code_len <= budget.max_tokens:
            return Processed(_processed_row(prompt, code, row, source, untrusted), shortened=i > 0)
    room = budget.max_tokens - budget.prompt_len(prompt)
    if budget.allow_truncation and room > 1:
        cut = _truncate_code(code, budget, room)
        return Processed(_processed_row(prompt, cut, row, source, untrusted), truncated=True)
    return Processed(
        None,
        f"code alone needs {code_len} tokens (with EOS); with the shortest prompt "
        f"({budget.prompt_len(prompt)} tokens) the row has {code_len + budget.prompt_len(prompt)}"
        f" > max_tokens={budget.max_tokens}",
    )
