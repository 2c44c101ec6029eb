"""Weight reports on a fixed probe batch: HTML token-weight heatmap and TD-error / weight histograms.

The probe runs the experiment's strategy without gradients on the same forward the loss uses; the strategy's
state (ablation RNG, EMA anchor) is saved before and restored after, so reports never change training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wmtp_core.config import ResolvedConfig
from wmtp_core.io import atomic_write_text
from wmtp_core.losses import weighted_mtp_loss
from wmtp_core.tracking.heatmap import WeightedSample, histograms_png, token_weight_html
from wmtp_core.train.stages import Models
from wmtp_core.weighting.gae import state_values, td_errors, terminal_rewards
from wmtp_core.weighting.global_batch import rank_local
from wmtp_core.weighting.strategies import WeightingStrategy, count_target_tokens, target_mask


@dataclass
class Probe:
    weights: torch.Tensor  # (B, S) per target position
    mask: torch.Tensor  # (B, S) bool target positions
    td: torch.Tensor | None  # (B, S) TD errors (verifiable only)


@torch.no_grad()
def probe(cfg: ResolvedConfig, models: Models, strategy: WeightingStrategy, batch: dict[str, Any]) -> Probe:
    saved = strategy.state_dict()
    model = models.policy
    try:
        trunk = model.trunk_forward(batch["input_ids"])
        n_heads = model.n_future
        with rank_local():  # every rank holds the same probe rows: normalise over them, not their copies
            prep = strategy.prepare(batch, model, trunk, count_target_tokens(batch))
            out = weighted_mtp_loss(model, trunk, batch["labels"][..., :n_heads], prep.weights, 1.0,
                                    impl="sequential", chunk_size=cfg.train.chunk_size,
                                    head_reduction=cfg.train.head_reduction)
        mask = target_mask(batch)
        td = None
        if models.value_head is not None:
            c = cfg.verifiable.critic
            values = state_values(models.value_head(model.normed_trunk(trunk)))
            rewards = terminal_rewards(batch["is_correct"], mask, c.reward_correct, c.reward_incorrect)
            td = td_errors(values, rewards, mask, c.gamma)
        return Probe(out.weights.float().cpu(), mask.cpu(), None if td is None else td.float().cpu())
    finally:
        strategy.load_state_dict(saved)


def heatmap_samples(tokenizer: Any, batch: dict[str, Any], result: Probe) -> list[WeightedSample]:
    samples = []
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    for b, length in enumerate(lengths):
        ids = batch["input_ids"][b, :length].tolist()
        weights = [float(result.weights[b, u]) if result.mask[b, u] else None for u in range(length)]
        correct = "correct" if float(batch["is_correct"][b]) > 0.5 else "incorrect"
        samples.append(WeightedSample(f"{batch['task_id'][b]} ({correct})",
                                      [tokenizer.piece(i) for i in ids], weights))
    return samples


def write_reports(out_dir: Path, tag: str, tokenizer: Any, batch: dict[str, Any], result: Probe,
                  experiment: str, html: bool = True) -> list[Path]:
    """histograms_<tag>.png (and token_weights_<tag>.html when `html`) under out_dir; returns their paths."""
    written = []
    if html:
        page = token_weight_html(heatmap_samples(tokenizer, batch, result), f"{experiment}: token weights ({tag})")
        written.append(Path(atomic_write_text(out_dir / f"token_weights_{tag}.html", page)))
    series = {"weight": result.weights[result.mask].tolist()}
    if result.td is not None:
        series["td_error"] = result.td[result.mask].tolist()
    written.append(histograms_png(series, out_dir / f"histograms_{tag}.png", f"{experiment} {tag}"))
    return written
