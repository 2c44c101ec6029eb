"""Step: upload the trained model and eval outputs to a storage target with a SHA256 manifest."""

from __future__ import annotations

from tasks._task import wmtp_task
from tasks.results import EvalSummary, StageResult, UploadReceipt
from wmtp_core.tracking import mlflow_backend as tracking


@wmtp_task("upload-artifacts", kind="io", cache=False)
def upload_artifacts(stage: StageResult, evaluation: EvalSummary | None, target: str,
                     parent_run_id: str | None) -> UploadReceipt:
    from wmtp_core.upload import upload_artifacts as upload

    sources = [p for p in (stage.model_dir, stage.value_head_path) if p is not None]
    sources += [p.parent for p in ((evaluation.results_path,) if evaluation and evaluation.results_path else ())]
    report = upload(sources, target)
    if parent_run_id:
        tracking.set_run_tags(parent_run_id, {"wmtp.upload.target": report.target,
                                         "wmtp.upload.files": str(len(report.sha256))})
    return UploadReceipt(report.target, report.manifest_path, len(report.uploaded), report.bytes_uploaded,
                         len(report.skipped))
