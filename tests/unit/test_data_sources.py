"""Source readers (DeepMind CodeContests records, derived sample, MBPP, HumanEval) and statement parsing."""

from __future__ import annotations

from fixtures.data import CC_SAMPLE, MBPP_FILE, write_jsonl

from wmtp_core import paths
from wmtp_core.data.description import looks_special_judge, parse_statement
from wmtp_core.data.prompt_parts import codecontests_parts
from wmtp_core.data.schema import raw_problems
from wmtp_core.data.sources.codecontests import read_codecontests, task_id_for
from wmtp_core.data.sources.humaneval import read_humaneval
from wmtp_core.data.sources.mbpp import read_mbpp

STATEMENT = (
    "Given n numbers, print their sum.\n\nSecond paragraph.\n\n"
    "Input\n\nThe first line has n (1 ≤ n ≤ 10^5).\n\n"
    "Output\n\nPrint one integer.\n\nExamples\n\nInput\n\n2\n1 2\n\n\nOutput\n\n3\n\n\nInput\n\n1\n5\n\n\n"
    "Output\n\n5\n\n\nInput\n\n1\n7\n\n\nOutput\n\n7\n\nNote\n\nIn the first example 1 + 2 = 3."
)


def deepmind_record(**overrides) -> dict:
    rec = {
        "name": "1500_C2. Sum (hard)",
        "description": STATEMENT,
        "public_tests": {"input": ["2\n1 2\n"], "output": ["3\n"]},
        "private_tests": {"input": ["1\n5\n"], "output": ["5\n"]},
        "generated_tests": {"input": ["1\n9\n"], "output": ["9\n"]},
        "source": 2,
        "difficulty": 8,
        "solutions": {
            "language": [3, 1, 2, 3],
            "solution": ["print(3)\r\n", "print 3", "int main(){}", "\n\nx=1\n"],
        },
        "incorrect_solutions": {"language": [3, 1, 3], "solution": ["print(4)", "print 4", "print(3)"]},
        "cf_contest_id": 1500,
        "cf_index": "C2",
        "cf_tags": ["math"],
    }
    rec.update(overrides)
    return rec


def test_statement_sections_and_examples() -> None:
    st = parse_statement(STATEMENT)
    assert st.legend == "Given n numbers, print their sum.\n\nSecond paragraph."
    assert st.input_spec == "The first line has n (1 ≤ n ≤ 10^5)."
    assert st.output_spec == "Print one integer."
    assert st.examples == [("2\n1 2", "3"), ("1\n5", "5"), ("1\n7", "7")]
    assert st.note == "In the first example 1 + 2 = 3."


def test_parts_keep_at_most_two_examples_and_fall_back_to_tests() -> None:
    row = {"instruction": STATEMENT, "test_cases": {}}
    assert len(codecontests_parts(row).examples) == 2
    plain = {
        "instruction": "Just print 1.",
        "test_cases": {"input": ["a", "b", "c"], "output": ["1", "1", "1"]},
    }
    parts = codecontests_parts(plain)
    assert parts.io_spec == "" and parts.examples == (
        "Example 1:\nInput:\na\nOutput:\n1",
        "Example 2:\nInput:\nb\nOutput:\n1",
    )


def test_special_judge_heuristic() -> None:
    assert looks_special_judge("If there are several answers, print any of them.")
    assert looks_special_judge(
        "Your answer is accepted if its absolute or relative error does not exceed 1e-6."
    )
    assert not looks_special_judge(STATEMENT)


def test_deepmind_record_conversion(tmp_path) -> None:
    path = write_jsonl(tmp_path / "dm.jsonl", [deepmind_record()])
    out = read_codecontests(path, "dm.jsonl")
    assert not out.errors
    assert [(r["output"], r["is_correct"]) for r in out.rows] == [
        ("print(3)", True),
        ("x=1", True),
        ("print(4)", False),
    ]
    assert out.skipped == {
        "python2 solution": 2,
        "non-python solution (language 2)": 1,
        "repeated solution in the same record": 1,
    }
    row = out.rows[0]
    assert row["task_id"] == "1500_C2"
    assert row["test_cases"] == {"input": ["2\n1 2\n", "1\n5\n", "1\n9\n"], "output": ["3\n", "5\n", "9\n"]}
    assert row["input"] == "2\n1 2"
    assert row["instruction"] == STATEMENT
    assert row["full_text"] == f"{STATEMENT}\n\n2\n1 2\n\nprint(3)"
    assert all(raw_problems(r) == [] for r in out.rows)


def test_deepmind_missing_optional_fields_are_empty(tmp_path) -> None:
    rec = {
        "name": "7_A. X",
        "description": "Print 1.",
        "cf_contest_id": 7,
        "cf_index": "A",
        "solutions": {"language": [3], "solution": ["print(1)"]},
    }
    out = read_codecontests(write_jsonl(tmp_path / "dm.jsonl", [rec]), "dm.jsonl")
    assert not out.errors
    assert out.rows[0]["test_cases"] == {} and out.rows[0]["input"] == ""


def test_non_codeforces_task_id() -> None:
    rec = deepmind_record(
        name="p02549 AtCoder Beginner Contest 179 - Leaping Tak", source=5, cf_contest_id=0, cf_index=""
    )
    assert task_id_for(rec) == "atcoder-p02549_A"


def test_deepmind_record_errors(tmp_path) -> None:
    bad = deepmind_record(solutions={"language": [3, 3], "solution": ["print(1)"]})
    out = read_codecontests(write_jsonl(tmp_path / "dm.jsonl", [deepmind_record(), bad]), "dm.jsonl")
    assert [str(e) for e in out.errors] == [
        "dm.jsonl:2: solutions: language/solution lengths differ (2 != 1)"
    ]


def test_shipped_derived_sample() -> None:
    out = read_codecontests(paths.DATASETS_ROOT / CC_SAMPLE, "sample")
    assert out.records_in == 300 and len(out.rows) == 300 and not out.errors
    assert len({r["task_id"] for r in out.rows}) == 300
    assert all(raw_problems(r) == [] and r["is_correct"] for r in out.rows)
    assert out.rows[0]["task_id"] == "1041_E" and len(out.rows[0]["test_cases"]["input"]) == 10
    assert 50 < len(out.special_judge) < 150


def test_mbpp_and_humaneval() -> None:
    mbpp = read_mbpp(paths.DATASETS_ROOT / MBPP_FILE, "mbpp.jsonl")
    assert len(mbpp.rows) == 974 and not mbpp.errors
    first = mbpp.rows[0]
    assert first["task_id"] == "mbpp-1_A" and first["test_cases"] == {} and "\r" not in first["output"]
    assert first["input"].startswith("assert min_cost(")
    he = read_humaneval()
    assert len(he.rows) == 164
    assert he.rows[0]["task_id"] == "humaneval-0_A"
    assert he.rows[0]["output"].startswith(he.rows[0]["input"].rstrip())
    assert all(raw_problems(r) == [] for r in mbpp.rows + he.rows)


def test_statement_variants() -> None:
    single = parse_statement(
        "Legend.\n\nInput \n\nn\n\nOutput\n\nm\n\nExample\n\nInput\n\n1\n\nOutput\n\n2\n"
    )
    assert (single.input_spec, single.output_spec, single.examples) == ("n", "m", [("1", "2")])
    interactive = parse_statement("Guess.\n\nInput\n\nn\n\nInteraction\n\nAsk ? x.\n\nOutput\n\nanswer")
    assert interactive.interaction == "Ask ? x." and looks_special_judge("Interaction\n\nAsk")
    plain = parse_statement("No headings here.\nJust text with the word Input inside.")
    assert not plain.structured and plain.legend.startswith("No headings") and plain.examples == []
    # An example whose output is missing is not a pair.
    partial = parse_statement("L.\n\nInput\n\nn\n\nOutput\n\nm\n\nExamples\n\nInput\n\n1\n")
    assert partial.examples == []
