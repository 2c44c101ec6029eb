"""Logger interface: console output, fan-out, heatmap HTML, histogram PNG, and the MLflow backend on sqlite."""

import io
from pathlib import Path

import pytest
import torch

from wmtp_core.tracking.heatmap import WeightedSample, histograms_png, token_weight_html
from wmtp_core.tracking.logger import ConsoleLogger, MultiLogger, finite_metrics


class Recorder:
    run_id = "rec"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log_params(self, params):
        self.calls.append(("params", params))

    def log_metrics(self, metrics, step):
        self.calls.append(("metrics", metrics, step))

    def log_artifact(self, path, artifact_path=None):
        self.calls.append(("artifact", path, artifact_path))

    def set_tags(self, tags):
        self.calls.append(("tags", tags))

    def close(self, status="FINISHED"):
        self.calls.append(("close", status))


def test_console_prints_every_n_steps() -> None:
    out = io.StringIO()
    lg = ConsoleLogger(every=2, stream=out)
    lg.log_metrics({"loss": 1.5}, step=1)
    lg.log_metrics({"loss": 1.25, "lr": 0.001}, step=2)
    assert out.getvalue() == "[step 2] loss=1.25 lr=0.001\n"


def test_multilogger_fans_out_and_converts_tensors() -> None:
    a, b = Recorder(), Recorder()
    multi = MultiLogger([a, b])
    multi.log_metrics({"loss": torch.tensor(2.0), "name": "skip"}, step=3)
    multi.set_tags({"k": "v"})
    multi.close("FAILED")
    for rec in (a, b):
        assert rec.calls == [("metrics", {"loss": 2.0}, 3), ("tags", {"k": "v"}), ("close", "FAILED")]
    assert multi.run_id == "rec"
    assert finite_metrics({"x": True, "y": 3}) == {"x": 1.0, "y": 3.0}


def test_heatmap_colours_response_tokens_and_escapes() -> None:
    sample = WeightedSample("task <1>", ["\u2581def", "<s>", "\u2581x", "<0x0A>"], [None, 1.0, 4.0, 0.0])
    page = token_weight_html([sample], "weights")
    assert "task &lt;1&gt;" in page and "&lt;s&gt;" in page  # escaped, not raw HTML
    assert page.count('class="tok"') == 3 and page.count('class="ctx"') == 1
    assert "rgb(255,255,255)" in page  # weight 1 is white
    assert "rgb(0,0,255)" in page  # weight 0 is full blue
    assert 'title="w=4.000"' in page
    assert "&#8629;\n" in page and "0x0A" not in page  # byte piece shown as a newline


def test_heatmap_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError):
        token_weight_html([WeightedSample("t", ["a", "b"], [1.0])], "w")


def test_histogram_png_written(tmp_path: Path) -> None:
    path = histograms_png({"td": [0.1, -0.2, 0.3], "weights": [1.0, 1.2]}, tmp_path / "h.png", "step 1")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no values"):
        histograms_png({"td": []}, tmp_path / "e.png", "empty")


@pytest.mark.slow
def test_mlflow_backend_sqlite_and_nesting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from wmtp_core.tracking.mlflow_backend import PARENT_ENV, MlflowLogger

    uri = f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    parent = MlflowLogger.start("exp", "parent")
    monkeypatch.setenv(PARENT_ENV, parent.run_id)
    child = MlflowLogger.start("ignored-uses-parent-experiment", "child")
    child.log_params({"optim.lr": 0.1})
    child.log_metrics({"stage2/loss": 1.0}, step=1)
    child.log_metrics({"stage2/loss": 0.5}, step=2)
    art = tmp_path / "a.json"
    art.write_text("{}")
    child.log_artifact(art, "reports")
    child.set_tags({"wmtp.config_hash": "abc"})
    child.close()
    parent.close()
    client = MlflowClient(uri)
    run = client.get_run(child.run_id)
    assert run.data.params["optim.lr"] == "0.1" and run.data.tags["wmtp.config_hash"] == "abc"
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id
    assert [m.value for m in client.get_metric_history(child.run_id, "stage2/loss")] == [1.0, 0.5]
    assert [f.path for f in client.list_artifacts(child.run_id, "reports")] == ["reports/a.json"]
    assert run.info.status == "FINISHED"
    assert (tmp_path / "db" / "artifacts").is_dir()  # artifact root next to the sqlite store
