"""Per-source pieces of a prompt (legend paragraphs, I/O format, examples) and how they shorten.

normalized_input = I/O format (with the constraints Codeforces states there) + at most 2 example I/O pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from wmtp_core.data.description import parse_statement

MAX_EXAMPLES = 2
ELLIPSIS = " ..."


@dataclass(frozen=True)
class PromptParts:
    legend: tuple[str, ...]  # instruction paragraphs
    io_spec: str
    examples: tuple[str, ...]  # rendered example blocks, best first
    example_header: str = ""

    def instruction(self, n_paragraphs: int | None = None) -> str:
        return "\n\n".join(self.legend[:n_paragraphs])

    def normalized_input(self, n_examples: int = MAX_EXAMPLES, io_spec: str | None = None) -> str:
        blocks = [self.io_spec if io_spec is None else io_spec]
        shown = self.examples[: min(n_examples, MAX_EXAMPLES)]
        if shown:
            body = "\n".join(shown) if self.example_header else "\n\n".join(shown)
            blocks.append(self.example_header + body)
        return "\n\n".join(b for b in blocks if b)


def _paragraphs(text: str) -> tuple[str, ...]:
    paras = tuple(p.strip() for p in text.split("\n\n") if p.strip())
    return paras or (text.strip(),)


def _example_block(i: int, inp: str, out: str) -> str:
    return f"Example {i}:\nInput:\n{inp}\nOutput:\n{out}"


def codecontests_parts(row: dict) -> PromptParts:
    st = parse_statement(row["instruction"])
    pairs = st.examples or list(zip(row["test_cases"].get("input", []), row["test_cases"].get("output", [])))
    examples = tuple(
        _example_block(i, a.strip("\n"), b.strip("\n"))
        for i, (a, b) in enumerate(pairs[:MAX_EXAMPLES], start=1)
    )
    if not st.structured:
        return PromptParts(_paragraphs(row["instruction"]), "", examples)
    io = [f"Input format:\n{st.input_spec}", f"Output format:\n{st.output_spec}"]
    if st.interaction:
        io.append(f"Interaction:\n{st.interaction}")
    return PromptParts(_paragraphs(st.legend or row["instruction"]), "\n\n".join(io), examples)


def mbpp_parts(row: dict) -> PromptParts:
    asserts = tuple(line for line in row["input"].split("\n") if line.strip())
    return PromptParts(_paragraphs(row["instruction"]), "", asserts, "Your code should pass tests like:\n")


def humaneval_parts(row: dict) -> PromptParts:
    return PromptParts(_paragraphs(row["instruction"]), row["input"], ())


PARTS_BY_SOURCE = {"codecontests": codecontests_parts, "mbpp": mbpp_parts, "humaneval": humaneval_parts}


def cut_words(text: str, n_words: int) -> str:
    words = text.split(" ")
    return text if n_words >= len(words) else " ".join(words[:n_words]).rstrip() + ELLIPSIS
