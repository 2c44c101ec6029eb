"""Step: sandboxed pass@k of a trained model (`wmtp_core.eval.harness.evaluate`), logged as a nested MLflow run."""

from __future__ import annotations

from pathlib import Path

from tasks._task import wmtp_task
from tasks.results import EvalSummary, StageResult
from wmtp_core.tracking import mlflow_backend as tracking


@wmtp_task("evaluate", cache_exclude=("parent_run_id",))
def evaluate(stage: StageResult, dataset: str, n: int, ks: list[int], limit: int | None, out_dir: str,
             max_new_tokens: int, temperature: float, speculative: bool | None, seed: int, device: str,
             parent_run_id: str | None) -> EvalSummary:
    from wmtp_core.eval.harness import evaluate as run_eval

    if stage.model_dir is None:
        raise ValueError(f"{stage.output_dir}: stage {stage.stage} exported no model directory to evaluate")
    result = run_eval(stage.model_dir, dataset, n=n, ks=ks, limit=limit, out_dir=Path(out_dir),
                      temperature=temperature, speculative=speculative, max_new_tokens=max_new_tokens, seed=seed,
                      device=device)
    pass_at_k = {str(k): float(v) for k, v in result.pass_at_k.items()}
    run_id = tracking.child_run(parent_run_id, f"{stage.experiment}-eval-{dataset}", result.metrics(),
                               {"dataset": dataset, "n": n, "limit": limit, "max_new_tokens": max_new_tokens,
                                "temperature": temperature, "speculative": result.speculative,
                                "model_dir": str(stage.model_dir)},
                               {"wmtp.step": "evaluate", "wmtp.trained_run_id": stage.mlflow_run_id or ""})
    print(f"{stage.experiment} {dataset}: {pass_at_k}")
    return EvalSummary(dataset, stage.model_dir, pass_at_k, int(result.n_problems), int(result.n_samples),
                       Path(result.samples_path), Path(result.results_path), run_id,
                       bool(result.speculative))
