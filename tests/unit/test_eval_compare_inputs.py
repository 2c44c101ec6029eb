"""Reading the comparison's inputs: per-problem outcomes from results.jsonl, Stage 2 weight statistics from a
fabricated metrics.json history, and the critic report (schema wmtp.critic_report/v1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wmtp_core.eval.compare_inputs import load_run, read_critic_report, read_problem_counts, read_stage_means


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _critic(path: Path, **over) -> Path:
    report = {"schema": "wmtp.critic_report/v1", "split": "validation", "n_rows": {"correct": 3, "incorrect": 2},
              "n_localisation_rows": 2,
              "classification_auroc": {"critic": 0.8, "constant_critic": 0.5, "position_matched": 0.55},
              "localisation_auroc": {"critic": None, "constant_critic": 0.5, "position_matched": None}} | over
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def test_problem_counts_from_scored_samples(tmp_path: Path) -> None:
    rows = [{"task_id": "a", "passed": True}, {"task_id": "a", "passed": False}, {"task_id": "b", "passed": False}]
    assert read_problem_counts(_jsonl(tmp_path / "results.jsonl", rows)) == {"a": (2, 1), "b": (1, 0)}


def test_bad_results_line_is_named(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "results.jsonl", [{"task_id": "a", "passed": True}, {"task_id": "b"}])
    with pytest.raises(ValueError, match=r"results.jsonl:2: .*boolean `passed`"):
        read_problem_counts(path)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no scored samples"):
        read_problem_counts(tmp_path / "empty.jsonl")


def test_weight_means_over_stage2_steps(tmp_path: Path) -> None:
    history = {"stage1": [{"step": 1.0, "weight_entropy": 99.0}],
               "stage2": [{"step": 1.0, "weight_entropy": 2.0, "weight_ess": 0.5},
                          {"step": 2.0, "weight_entropy": 4.0, "weight_ess": 0.7},
                          {"step": 3.0, "weight_entropy": 6.0}]}
    (tmp_path / "metrics.json").write_text(json.dumps(history))
    means = read_stage_means(tmp_path / "metrics.json")
    assert means == {"weight_entropy": pytest.approx(4.0), "weight_ess": pytest.approx(0.6),
                     "weight_last10_share": None}
    assert read_stage_means(tmp_path / "absent.json")["weight_ess"] is None


def test_non_numeric_weight_metric_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"stage2": [{"weight_ess": "x"}]}))
    with pytest.raises(ValueError, match=r"metrics.json: `stage2` metric `weight_ess`"):
        read_stage_means(tmp_path / "metrics.json")


def test_critic_report_reads_nulls_and_checks_the_schema(tmp_path: Path) -> None:
    report = read_critic_report(_critic(tmp_path / "ok.json"))
    assert report["classification_auroc"] == {"critic": 0.8, "constant_critic": 0.5, "position_matched": 0.55}
    assert report["localisation_auroc"]["critic"] is None
    assert read_critic_report(tmp_path / "absent.json") is None
    with pytest.raises(ValueError, match=r"bad.json: field `schema`"):
        read_critic_report(_critic(tmp_path / "bad.json", schema="other/v0"))
    with pytest.raises(ValueError, match=r"range.json: field `classification_auroc.critic` must be an AUROC"):
        read_critic_report(_critic(tmp_path / "range.json",
                                   classification_auroc={"critic": 1.5, "constant_critic": 0.5,
                                                         "position_matched": 0.5}))


def test_load_run_takes_weights_from_stage2_and_critic_from_stage1(tmp_path: Path) -> None:
    stage1, stage2 = tmp_path / "s1", tmp_path / "s2"
    _critic(stage1 / "reports" / "critic_report.json")
    stage2.mkdir()
    (stage2 / "metrics.json").write_text(json.dumps({"stage2": [{"weight_last10_share": 0.25}]}))
    results = _jsonl(tmp_path / "results.jsonl", [{"task_id": "a", "passed": True}])
    run = load_run("verifiable", 1, results, [stage1, stage2])
    assert run.counts == {"a": (1, 1)} and run.seed == 1
    assert run.weights["weight_last10_share"] == 0.25 and run.weights["weight_entropy"] is None
    assert run.critic["classification_auroc"]["critic"] == 0.8
    assert load_run("baseline", None, None, [stage2]).counts is None
