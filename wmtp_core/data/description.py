"""Splitting a Codeforces-style problem statement into legend, Input, Output, Examples and Note sections.

Codeforces statements in CodeContests put each section heading on a line of its own ("Input", "Output",
"Examples"/"Example", "Note", sometimes "Interaction"). Inside Examples, each case is an "Input" block
followed by an "Output" block. Constraints are stated inside the Input section, so keeping that section
keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_HEADINGS = {
    "input": "input",
    "output": "output",
    "interaction": "interaction",
    "examples": "examples",
    "example": "examples",
    "note": "note",
    "notes": "note",
}
# Phrases that mean the checker is not exact-match (any valid answer, or a float tolerance), lower case.
SPECIAL_JUDGE_PHRASES = (
    "print any",
    "output any",
    "any of them",
    "any one of them",
    "any such",
    "any valid",
    "any correct",
    "any possible",
    "any suitable",
    "any order",
    "any answer",
    "absolute error",
    "relative error",
    "interaction",
)


@dataclass
class Statement:
    legend: str
    input_spec: str = ""
    output_spec: str = ""
    interaction: str = ""
    note: str = ""
    examples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def structured(self) -> bool:
        return bool(self.input_spec or self.output_spec)


def _strip_block(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n").rstrip()


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """[(name, lines)], the first named "legend"; a heading is a lone known word after the legend started."""
    out: list[tuple[str, list[str]]] = [("legend", [])]
    examples_open = False
    for line in text.replace("\r\n", "\n").split("\n"):
        name = _HEADINGS.get(line.strip().lower())
        # Inside Examples, Input/Output lines are case markers, not section headings.
        if name is not None and not (examples_open and name in ("input", "output")):
            out.append((name, []))
            examples_open = name == "examples"
            continue
        out[-1][1].append(line)
    return out


def _parse_examples(lines: list[str]) -> list[tuple[str, str]]:
    """Input/Output marker lines alternate; the text between markers is the case (blank edges removed)."""
    cases: list[tuple[str, str]] = []
    current: dict[str, list[str]] = {}
    side: str | None = None
    for line in lines:
        marker = line.strip().lower()
        if marker in ("input", "output"):
            if marker == "input" and "output" in current:
                cases.append((_strip_block(current["input"]), _strip_block(current["output"])))
                current = {}
            side = marker
            current[side] = []
        elif side is not None:
            current[side].append(line)
    if "input" in current and "output" in current:
        cases.append((_strip_block(current["input"]), _strip_block(current["output"])))
    return cases


def parse_statement(text: str) -> Statement:
    st = Statement(legend="")
    for name, lines in _sections(text):
        if name == "examples":
            st.examples.extend(_parse_examples(lines))
            continue
        attr = {
            "legend": "legend",
            "input": "input_spec",
            "output": "output_spec",
            "interaction": "interaction",
            "note": "note",
        }[name]
        block = _strip_block(lines)
        setattr(st, attr, (getattr(st, attr) + "\n\n" + block).strip("\n") if getattr(st, attr) else block)
    return st


def looks_special_judge(text: str) -> bool:
    """Heuristic: the statement admits several answers or a tolerance (exact-match tests are not trusted)."""
    lower = text.lower()
    return any(phrase in lower for phrase in SPECIAL_JUDGE_PHRASES)
