"""pandera schemas over whole files (raw, processed, manifest); failures become `file:line: field: reason`.

Row checks in `schema.py` give the first, precise reason per line; these frame schemas re-check the typed
columns and add the file-wide rules (uniqueness, token budget, bucket consistency).
"""

from __future__ import annotations

import math

from wmtp_core.data.errors import RowError
from wmtp_core.data.schema import EOS_TEXT, PROMPT_HEAD, PROMPT_TAIL, SOURCES, TASK_ID_RE

SHA256_RE = r"^[0-9a-f]{64}$"


def raw_schema():
    import pandera.pandas as pa

    nonempty = pa.Check(lambda s: s.str.strip().str.len() > 0, element_wise=False, name="non_empty")
    return pa.DataFrameSchema(
        {
            "instruction": pa.Column(str, nonempty),
            "input": pa.Column(str),
            "output": pa.Column(str, nonempty),
            "task_id": pa.Column(str, pa.Check.str_matches(TASK_ID_RE.pattern)),
            "is_correct": pa.Column(bool),
            "full_text": pa.Column(str, nonempty),
            "n_tests": pa.Column(int, pa.Check.ge(0)),
        },
        unique=["task_id", "output"],
        strict=True,
    )


def processed_schema(max_tokens: int, is_correct: bool):
    import pandera.pandas as pa

    return pa.DataFrameSchema(
        {
            "prompt": pa.Column(
                str, [pa.Check.str_startswith(PROMPT_HEAD), pa.Check.str_endswith(PROMPT_TAIL)]
            ),
            "response": pa.Column(str, pa.Check.str_endswith(EOS_TEXT)),
            "task_id": pa.Column(str, pa.Check.str_matches(TASK_ID_RE.pattern)),
            "source": pa.Column(str, pa.Check.isin(list(SOURCES))),
            "is_correct": pa.Column(bool, pa.Check.eq(is_correct)),
            "has_tests": pa.Column(bool),
            "n_tokens": pa.Column(int, pa.Check.le(max_tokens, name=f"at_most_max_tokens_{max_tokens}")),
        },
        unique=["prompt", "response"],
        strict=True,
    )


def manifest_files_schema():
    import pandera.pandas as pa

    return pa.DataFrameSchema(
        {
            "path": pa.Column(str, unique=True),
            "sha256": pa.Column(str, pa.Check.str_matches(SHA256_RE)),
            "rows": pa.Column(int, pa.Check.ge(0)),
            "bytes": pa.Column(int, pa.Check.ge(0)),
        },
        strict=True,
    )


def _line(index: object) -> int:
    if index is None or (isinstance(index, float) and math.isnan(index)):
        return 0
    return int(index)


def frame_errors(schema, records: list[dict], lines: list[int], file: str) -> list[RowError]:
    """Validate `records` (one per line number in `lines`) lazily; every failure case becomes a RowError."""
    import pandas as pd
    import pandera.errors as pe

    if not records:
        return []
    frame = pd.DataFrame.from_records(records, index=lines)
    try:
        schema.validate(frame, lazy=True)
    except pe.SchemaErrors as err:
        cases = err.failure_cases
        return [
            RowError(
                file,
                _line(c["index"]),
                str(c["column"] or "<row>"),
                f"failed {c['check']} (value {str(c['failure_case'])[:80]!r})",
            )
            for c in cases.to_dict("records")
        ]
    return []
