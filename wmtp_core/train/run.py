"""`run_training`: config -> models -> stages (shared loop) -> reports -> exported model + result.json."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from vendor.meta_llama.model import Transformer
from wmtp_core import distributed as wd
from wmtp_core.config import ResolvedConfig, config_dict, config_hash, flatten, to_yaml
from wmtp_core.experiments import EXPERIMENTS
from wmtp_core.io import atomic_write_json, sha256_file
from wmtp_core.tracking.logger import MultiLogger, make_logger
from wmtp_core.tracking.provenance import model_weights_sha256, provenance_tags
from wmtp_core.train.allocator import set_mmap_threshold
from wmtp_core.train.data import BatchSource, check_prompt_budget, load_rows, steps_for
from wmtp_core.train.device import autocast_dtype, seed_everything, select_device
from wmtp_core.train.errors import RunSetupError
from wmtp_core.train.job import RESULT_FILE, TrainResult
from wmtp_core.train.lock import RunLock
from wmtp_core.train.loop import LoopSettings, StageLoop, StageOutcome, StagePlan
from wmtp_core.train.report import probe, write_reports
from wmtp_core.train.resume import (
    resolve_resume,
    training_config,
    training_config_hash,
    write_resolved_config,
)
from wmtp_core.train.sampler import ResumableSampler
from wmtp_core.train.stages import (
    Models,
    ValueHeadStage,
    WeightedMTPStage,
    WeightProfile,
    build_strategy,
    stage1_mean_value,
)
from wmtp_core.train.state import (
    Checkpoint,
    checkpoint_reference,
    list_checkpoints,
    load_state,
    verify_checkpoint,
)
from wmtp_core.weighting.position import profile_means, profile_metrics, profile_png

__all__ = ["RunSetupError", "TrainResult", "Trainer", "run_training"]

def load_models(cfg: ResolvedConfig, device: torch.device) -> tuple[Models, Any]:
    from wmtp_core.model.adapter import MetaLlamaMTPAdapter
    from wmtp_core.model.finetune import apply_finetune
    from wmtp_core.model.value_head import ValueHead

    spec = EXPERIMENTS[cfg.experiment]
    ref_dir = cfg.resolved_path("reference_model_dir")
    if spec.needs_reference and not (ref_dir / "metadata.json").is_file():
        raise RunSetupError(spec.missing_reference(ref_dir, cfg.model.use_micro_model))
    adapter = MetaLlamaMTPAdapter.from_pretrained(cfg.model_dir, device=device)
    apply_finetune(adapter.model, cfg.model)  # LoRA: peft adapters injected in place (base frozen)
    adapter.model.checkpoint_trunk = cfg.model.activation_checkpointing
    adapter.model.train()
    models = Models(adapter.model)
    if spec.needs_stage1:
        models.value_head = ValueHead(adapter.args.dim, cfg.stage1.value_hidden).to(device)
    if spec.needs_reference:
        ref = MetaLlamaMTPAdapter.from_pretrained(ref_dir, device=device)
        check_reference_tokenizer(adapter.tokenizer, ref.tokenizer)
        models.reference = ref.model
    return models, adapter


def check_reference_tokenizer(policy: Any, reference: Any) -> None:
    """The Rho-1 excess loss compares CEs of the same token ids: the reference must use the policy's tokenizer
    (same pieces at the same ids, not only the same vocabulary size); the error names both tokenizer files."""
    from wmtp_core.artifacts.checks import check_same_vocabulary
    from wmtp_core.artifacts.errors import TokenizerMismatch

    try:
        check_same_vocabulary(policy, reference)
    except TokenizerMismatch as exc:
        raise RunSetupError(f"Rho-1 reference tokenizer is not the policy's: {exc}") from exc


class Trainer:
    """One run: holds the models, logger and paths; `run()` walks the configured stages."""

    def __init__(self, cfg: ResolvedConfig, run_name: str | None, resume: str | None, stop_at: str | None,
                 allow_config_change: bool = False):
        self.cfg, self.chash = cfg, config_hash(cfg)
        self.name = run_name or cfg.run.run_name or f"{cfg.experiment}-{self.chash[:10]}"
        self.out = cfg.output_root / self.name
        self.ckpt_dir = self.out / "checkpoints"
        self.reports_dir = self.out / "reports"
        # one writer per run directory, held until run() ends; under torchrun rank 0 is the one that writes it
        self.lock = RunLock(self.out).acquire() if wd.detect_env().rank == 0 else None
        try:
            self._setup(cfg, resume, stop_at, allow_config_change)
        except BaseException:
            self.release()
            raise

    def _setup(self, cfg: ResolvedConfig, resume: str | None, stop_at: str | None, allow_config_change: bool) -> None:
        self.training = training_config(cfg, wd.detect_env().world_size)
        self.start, _ = resolve_resume(resume, self.ckpt_dir, list(cfg.stages), self.training, allow_config_change)
        self.stop_at = _parse_stop(stop_at)
        seed_everything(cfg.run.seed)
        self.env, self.device = wd.init_distributed(select_device(cfg.run.device))  # torchrun: join the group
        if cfg.model.cpu_offload:  # FSDP2's CPU offload needs a process group, even of one
            wd.init_local_group(self.device)
        self.amp = autocast_dtype(self.device, cfg.run.precision)
        if self.device.type == "cpu" and cfg.train.cpu_mmap_threshold_mb is not None:
            set_mmap_threshold(cfg.train.cpu_mmap_threshold_mb)
        self.models, self.adapter = load_models(cfg, self.device)
        check_prompt_budget(cfg, self.adapter.tokenizer)  # a too-small data.max_len fails here, not mid-run
        wd.shard_model(self.models.policy, self.device, mixed_precision=self.amp == torch.bfloat16,  # FSDP2
                       cpu_offload=cfg.model.cpu_offload)
        self.logger: MultiLogger = make_logger(cfg, self.name) if wd.is_main() else MultiLogger([])
        self.history: dict[str, list[dict[str, float]]] = {}
        self.last: dict[str, Checkpoint] = {}
        self.strategy: Any = None
        self.profile: WeightProfile | None = None  # Stage 2 weight-by-distance-to-EOS sums
        self.loop: StageLoop | None = None

    # --- setup --------------------------------------------------------------------------------------------
    def announce(self) -> None:
        if not wd.is_main():
            return
        print(f"wmtp train: {self.cfg.experiment} on {self.device} -> {self.out}", file=sys.stderr)
        print(f"  checkpoints: {self.ckpt_dir}", file=sys.stderr)
        if self.start is not None:
            print(f"  resuming from: {self.start.path}", file=sys.stderr)
        if self.logger.run_id:
            from wmtp_core.secrets import redact
            from wmtp_core.tracking.mlflow_backend import resolve_tracking_uri

            uri = resolve_tracking_uri(self.cfg.logging.tracking_uri)
            print(f"  mlflow run: {self.logger.run_id} at {redact(uri)}", file=sys.stderr)

    def log_setup(self) -> None:
        if not wd.is_main():
            return
        cfg = self.cfg
        self.logger.log_params(flatten(config_dict(cfg)))
        ref = cfg.resolved_path("reference_model_dir") if EXPERIMENTS[cfg.experiment].needs_reference else None
        tags = provenance_tags(self.chash, cfg.experiment, cfg.resolved_path("datasets_root"), cfg.model_dir, ref)
        self.logger.set_tags({**tags, "wmtp.run_name": self.name, "wmtp.output_dir": str(self.out)})
        path = write_resolved_config(self.out, to_yaml(cfg))  # never replaces an earlier invocation's
        self.logger.log_artifact(path, "config")

    # --- stages -------------------------------------------------------------------------------------------
    def source(self, stage: str) -> BatchSource:
        cfg = self.cfg
        rows = load_rows(cfg, include_incorrect=stage == "stage1")
        offset = {"stage1": 1000, "stage2": 2000}[stage]
        sampler = ResumableSampler(len(rows), cfg.train.batch_size, cfg.run.seed + offset, cfg.data.shuffle,
                                   rank=self.env.rank, world_size=self.env.world_size)
        return BatchSource(rows, self.adapter.tokenizer, cfg.data.max_len, self.models.policy.n_future, sampler,
                           self.device)

    def plan(self, stage: str, source: BatchSource) -> StagePlan:
        cfg = self.cfg
        sc = cfg.stage1 if stage == "stage1" else cfg.train
        total = steps_for(len(source.rows), sc.epochs, cfg.train.batch_size, cfg.train.grad_accum, sc.max_steps,
                          self.env.world_size)
        wd.reshard(self.models.policy)  # the optimizer must get the sharded parameters (see wd.reshard)
        if stage == "stage1":
            plan = ValueHeadStage(cfg, self.models, source, total)
        else:
            self.strategy = build_strategy(cfg, self.models, self.stage1_mean())
            self.profile = WeightProfile()
            plan = WeightedMTPStage(cfg, self.models, self.strategy, source, total, self.profile)
        plan.on_step = lambda step: self.maybe_report(stage, step, source)
        return plan

    def settings(self, stage: str) -> LoopSettings:
        t = self.cfg.train
        stop = self.stop_at[1] if self.stop_at and self.stop_at[0] == stage else None
        return LoopSettings(grad_accum=t.grad_accum, checkpoint_every=t.checkpoint_every,
                            keep_checkpoints=t.keep_checkpoints, progress_bar=t.progress_bar, device=self.device,
                            amp_dtype=self.amp, checkpoint_root=self.ckpt_dir, config_hash=self.chash, stop_after=stop,
                            max_param_norm_ratio=t.max_param_norm_ratio,
                            manifest_extra={"config": self.training,
                                            "config_hash": training_config_hash(self.training)})

    def run_stage(self, stage: str) -> StageOutcome:
        source = self.source(stage)
        plan = self.plan(stage, source)
        loop = StageLoop(plan, self.settings(stage), self.cfg.optim,
                         lambda m, step: self.logger.log_metrics({f"{stage}/{k}": v for k, v in m.items()}, step))
        self.loop = loop
        if self.start is not None and self.start.stage == stage:
            loop.restore(self.start)
        result = loop.run()
        self.history[stage] = result.history
        if result.last_checkpoint is not None:
            self.last[stage] = result.last_checkpoint
        if stage == "stage1" and result.completed:
            self.critic_report()
        return result

    def critic_report(self) -> None:
        """End of Stage 1: critic report on held-out rows -> reports/critic_report.json and stage1/critic_report/*."""
        from wmtp_core.eval.critic_report import report_metrics, stage1_critic_report, write_critic_report

        report = stage1_critic_report(self.cfg, self.models.policy, self.models.value_head, self.adapter.tokenizer,
                                      self.stage1_mean())  # every rank: the model may be sharded
        if report is None or not wd.is_main():
            return
        path = write_critic_report(report, self.out)
        step = len(self.history.get("stage1", []))
        self.logger.log_metrics({f"stage1/{k}": v for k, v in report_metrics(report).items()}, step)
        self.logger.log_artifact(path, "reports")

    def recall_finished(self, stage: str) -> None:
        """History and last checkpoint of a stage completed by an earlier invocation (when still on disk)."""
        done = list_checkpoints(self.ckpt_dir, [stage])
        if done:
            verify_checkpoint(done[-1])  # raises CheckpointError naming the file
            self.last[stage] = done[-1]
            self.history[stage] = list(load_state(done[-1])["history"])

    def stage1_mean(self) -> float | None:
        """The Stage 1 mean value (constant_critic's V) from Stage 1's history (finished, or still running)."""
        history = self.history.get("stage1")
        if history is None and self.loop is not None and self.loop.plan.stage == "stage1":
            history = self.loop.history
        return stage1_mean_value(history or [])

    # --- reports and export -------------------------------------------------------------------------------
    def maybe_report(self, stage: str, step: int, source: BatchSource) -> None:
        if step % self.cfg.logging.histogram_every == 0:
            self.report(f"{stage}-step{step:07d}", source, html=False)

    def report(self, tag: str, source: BatchSource, html: bool = True) -> None:
        paths = self.probe_reports(tag, source, html)
        if wd.is_main() and tag == "final" and self.profile is not None and self.profile.counts.sum() > 0:
            paths += self.write_profile()  # whatever logging.heatmap_samples says
        for path in paths:
            self.logger.log_artifact(path, "reports")

    def probe_reports(self, tag: str, source: BatchSource, html: bool) -> list[Path]:
        """Heatmap / histograms of `logging.heatmap_samples` rows (none when 0); files on rank 0 only."""
        n = min(self.cfg.logging.heatmap_samples, len(source.rows))
        if n == 0:
            return []
        batch = source.batch_for(list(range(n)))
        strategy = self.strategy
        if strategy is None:
            strategy = build_strategy(self.cfg, self.models, self.stage1_mean())
        result = probe(self.cfg, self.models, strategy, batch)  # every rank: the model is sharded
        if not wd.is_main():
            return []
        return list(write_reports(self.reports_dir, tag, self.adapter.tokenizer, batch, result,
                                  self.cfg.experiment, html=html))

    def write_profile(self) -> list[Path]:
        """Stage 2's weight-by-distance-to-EOS profile: metrics (logger), weight_profile.json and a plot."""
        p = self.profile
        means = profile_means(p.sums, p.counts)
        near = float(p.sums[:10].sum() / p.sums.sum().clamp_min(1e-30))
        step = len(self.history.get("stage2", []))
        self.logger.log_metrics({**{f"stage2/{k}": v for k, v in profile_metrics(p.sums, p.counts).items()},
                                 "stage2/weight_profile_last10_share": near}, step)
        data = {"distance_cap": len(means) - 1, "mean_weight": means, "token_count": p.counts.tolist(),
                "last10_share": near, "experiment": self.cfg.experiment}
        json_path = Path(atomic_write_json(self.reports_dir / "weight_profile.json", data))
        png = profile_png(means, self.reports_dir / "weight_profile.png",
                          f"{self.cfg.experiment}: mean weight by distance to EOS (Stage 2)")
        return [json_path, png]

    def export(self) -> tuple[Path, Path | None, str]:
        dtype = getattr(torch, self.cfg.model.export_dtype)
        if self.cfg.model.finetune == "lora":  # export base + scaled B @ A in the Meta layout (no adapters)
            from wmtp_core.model.finetune import merged_model

            state = wd.gather_full_state_dict(self.models.policy)
            if state is None:
                return None, None, None
            self.adapter.model = merged_model(state, self.adapter.args, self.cfg.model.lora)
        elif wd.is_sharded(self.models.policy):  # gather the full weights onto rank 0; the others write nothing
            plain = wd.unsharded_copy(self.models.policy, lambda: Transformer(self.adapter.args))
            if plain is None:
                return None, None, None
            self.adapter.model = plain
        extra = {"run_name": self.name, "experiment": self.cfg.experiment, "config_hash": self.chash,
                 "mlflow_run_id": self.logger.run_id}
        model_dir = self.adapter.save_pretrained(self.out / "model", extra_metadata=extra, dtype=dtype)
        head = None
        if self.models.value_head is not None:
            head = self.models.value_head.save(self.out / "value_head.safetensors")
        return Path(model_dir), head, model_weights_sha256(Path(model_dir))

    def finish(self, completed: bool) -> TrainResult:
        final = {f"{stage}/{k}": v for stage, rows in self.history.items() if rows for k, v in rows[-1].items()}
        if not wd.is_main():  # other ranks only take part in the final report and export
            if completed:
                self.report("final", self.source(self.cfg.stages[-1]))
                self.export()
            return TrainResult(output_dir=self.out, checkpoint_dir=self.ckpt_dir, model_dir=None, value_head_path=None,
                               mlflow_run_id=None, final_metrics=final, weights_sha256=None, config_hash=self.chash,
                               completed=completed, result_path=self.out / RESULT_FILE,
                               history_path=self.out / "metrics.json")
        history_path = Path(atomic_write_json(self.out / "metrics.json", self.history))
        refs = {stage: checkpoint_reference(ckpt) for stage, ckpt in self.last.items()}
        refs_path = Path(atomic_write_json(self.out / "checkpoints.json", refs))
        model_dir = head = sha = None
        if completed:
            last_stage = self.cfg.stages[-1]
            self.report("final", self.source(last_stage))
            model_dir, head, sha = self.export()
        result = TrainResult(output_dir=self.out, checkpoint_dir=self.ckpt_dir, model_dir=model_dir, value_head_path=head,
                             mlflow_run_id=self.logger.run_id, final_metrics=final, weights_sha256=sha,
                             config_hash=self.chash, completed=completed, result_path=self.out / RESULT_FILE,
                             history_path=history_path, value_head_sha256=sha256_file(head) if head is not None else None)
        result.write()
        metrics_path = Path(atomic_write_json(self.reports_dir / "final_metrics.json", final))
        for path, where in ((metrics_path, "metrics"), (refs_path, "checkpoints"), (history_path, "metrics"),
                            (result.result_path, None)):
            self.logger.log_artifact(path, where)
        return result

    def run(self) -> TrainResult:
        self.announce()
        try:
            self.log_setup()
            completed = True
            order = list(self.cfg.stages)
            for stage in order:
                if self.start is not None and order.index(self.start.stage) > order.index(stage):
                    self.recall_finished(stage)  # done before the checkpoint we resume from (weights are in it)
                    continue
                if not self.run_stage(stage).completed:
                    completed = False
                    break
            result = self.finish(completed)
        except BaseException:
            self.logger.close("FAILED" if not isinstance(sys.exc_info()[1], KeyboardInterrupt) else "KILLED")
            self.release()
            raise
        self.logger.close("FINISHED")
        self.release()
        if wd.is_main():
            print(f"  result: {result.result_path}", file=sys.stderr)
        if self.env.launched or self.cfg.model.cpu_offload:
            wd.destroy_distributed()
        return result


    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _parse_stop(stop_at: str | None) -> tuple[str, int] | None:
    if stop_at is None:
        return None
    stage, _, step = stop_at.partition(":")
    if stage not in ("stage1", "stage2") or not step.isdigit() or int(step) < 1:
        raise ValueError(f"stop_at must look like 'stage2:3', got {stop_at!r}")
    return stage, int(step)


def run_training(cfg: ResolvedConfig, run_name: str | None = None, resume: str | None = None, *,
                 stop_at: str | None = None, allow_config_change: bool = False) -> TrainResult:
    """Train `cfg` (all its stages) and export the model; see TrainResult. `resume`: None, "auto" or a checkpoint
    directory (verified; its recorded training config must equal cfg's unless `allow_config_change`).
    `stop_at="stage2:3"` stops after that step (checkpoint written) — simulated preemption."""
    return Trainer(cfg, run_name, resume, stop_at, allow_config_change).run()
