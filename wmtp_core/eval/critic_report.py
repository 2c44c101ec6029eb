"""Critic report: does the value head classify correct vs incorrect rows and localise the first wrong token?

Runs the policy trunk + value head (no grad, fp32, autocast off) over held-out rows, computes V, TD errors
(the same td_errors / terminal_rewards as training), and scores three critics side by side (critic_metrics.py):

  critic            the value head;
  constant_critic   V replaced by a constant (the Stage 1 mean value when given, else the mean V over the
                    evaluated rows' target tokens);
  position_matched  the critic's TD errors (and final values) permuted among the evaluated rows' target tokens at
                    the same distance to their row's EOS (weighting/position.py, seeded): position kept, tokens not;
                    its AUROCs are the mean over 16 permutations (less permutation noise; the value a critic that
                    knows only the distance to EOS would reach on average).

Writes <out>/reports/critic_report.json (schema wmtp.critic_report/v1, the contract other tools read).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from wmtp_core.eval.critic_metrics import classification_auroc, divergence_points, localisation_auroc
from wmtp_core.io import atomic_write_json
from wmtp_core.weighting.critic import CriticConfig
from wmtp_core.weighting.gae import state_values, td_errors, terminal_rewards
from wmtp_core.weighting.position import position_matched

SCHEMA = "wmtp.critic_report/v1"
REPORT_NAME = "critic_report.json"
PERMUTATIONS = 16  # position_matched scores are averaged over this many seeded permutations


def encode_rows(tokenizer: Any, rows: Sequence[dict], max_len: int) -> list[dict[str, Any]]:
    from wmtp_core.data.collate import encode_example

    return [encode_example(tokenizer, dict(row), max_len) for row in rows]


@torch.no_grad()
def values_for(model: nn.Module, head: nn.Module, encoded: list[dict[str, Any]], pad_id: int,
               batch_size: int = 16) -> tuple[Tensor, Tensor, Tensor]:
    """(values V(s_u), target mask, is_correct) over all rows, (N, S_max) padded, on the CPU in fp32."""
    from wmtp_core.data.collate import MTPCollator

    collate = MTPCollator(pad_id=pad_id, n_future=1)
    device = next(model.parameters()).device
    s_max = max(len(e["input_ids"]) for e in encoded)
    values = torch.zeros(len(encoded), s_max)
    mask = torch.zeros(len(encoded), s_max, dtype=torch.bool)
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start:start + batch_size])
        ids = batch["input_ids"].to(device)
        with torch.autocast(device.type, enabled=False):
            v = state_values(head(model.normed_trunk(model.trunk_forward(ids)).float()))
        m = batch["response_mask"].clone()
        m[:, 0] = False
        n, s = ids.shape
        values[start:start + n, :s] = v.float().cpu()
        mask[start:start + n, :s] = m
    correct = torch.tensor([bool(e["is_correct"]) for e in encoded])
    return values, mask, correct


def _final(x: Tensor, mask: Tensor) -> Tensor:
    """x at each row's last target token (EOS position): V(s_T)."""
    last = mask.long().cumsum(dim=1).argmax(dim=1)
    return x.gather(1, last[:, None]).squeeze(1)


def score_critics(values: Tensor, mask: Tensor, correct: Tensor, divergent: dict[int, int], cfg: CriticConfig,
                  constant: float | None, seed: int = 0, permutations: int = PERMUTATIONS
                  ) -> dict[str, dict[str, float | None]]:
    """{"classification_auroc": {critic: ...}, "localisation_auroc": {...}} for the three critics
    (position_matched: the mean over `permutations` seeded permutations)."""
    rewards = terminal_rewards(correct, mask, cfg.reward_correct, cfg.reward_incorrect)
    c = float((values * mask).sum() / mask.sum().clamp_min(1)) if constant is None else float(constant)
    const_values = torch.where(mask, torch.full_like(values, c), torch.zeros_like(values))
    td = td_errors(values, rewards, mask, cfg.gamma)
    variants = {"critic": (_final(values, mask), td),
                "constant_critic": (_final(const_values, mask), td_errors(const_values, rewards, mask, cfg.gamma))}
    out: dict[str, dict[str, float | None]] = {
        "classification_auroc": {k: classification_auroc(f, correct) for k, (f, _) in variants.items()},
        "localisation_auroc": {k: localisation_auroc(t, mask, divergent) for k, (_, t) in variants.items()}}
    gen = torch.Generator().manual_seed(seed)
    draws = [(classification_auroc(_final(position_matched(values, mask, gen), mask), correct),
              localisation_auroc(position_matched(td, mask, gen), mask, divergent)) for _ in range(permutations)]
    for i, kind in enumerate(("classification_auroc", "localisation_auroc")):
        defined = [d[i] for d in draws if d[i] is not None]
        out[kind]["position_matched"] = sum(defined) / len(defined) if defined else None
    return out


def critic_report(model: nn.Module, head: nn.Module, tokenizer: Any, rows: Sequence[dict], cfg: CriticConfig,
                  split: str, max_len: int, constant: float | None = None, seed: int = 0) -> dict[str, Any]:
    """The wmtp.critic_report/v1 dict for `rows` (processed schema, correct and incorrect)."""
    if not rows:
        raise ValueError(f"critic report: no rows in split {split!r}")
    encoded = encode_rows(tokenizer, rows, max_len)
    values, mask, correct = values_for(model, head, encoded, getattr(tokenizer, "pad_id", tokenizer.eos_id))
    responses = [e["input_ids"][e["response_start"]:] for e in encoded]
    points = divergence_points(responses, correct.tolist(), [e["task_id"] for e in encoded])
    divergent = {b: encoded[b]["response_start"] + d for b, d in points.items()}
    scores = score_critics(values, mask, correct, divergent, cfg, constant, seed)
    n_correct = int(correct.sum())
    return {"schema": SCHEMA, "split": split, "n_rows": {"correct": n_correct, "incorrect": len(rows) - n_correct},
            "n_localisation_rows": len(divergent), **scores}


def write_critic_report(report: dict[str, Any], out_dir: Path) -> Path:
    """<out_dir>/reports/critic_report.json, atomically."""
    return Path(atomic_write_json(Path(out_dir) / "reports" / REPORT_NAME, report))


def report_metrics(report: dict[str, Any], prefix: str = "critic_report") -> dict[str, float]:
    """Flat numeric metrics for a logger (undefined AUROCs left out)."""
    out = {f"{prefix}/n_localisation_rows": float(report["n_localisation_rows"])}
    for kind in ("classification_auroc", "localisation_auroc"):
        for critic, value in report[kind].items():
            if value is not None:
                out[f"{prefix}/{kind}/{critic}"] = float(value)
    return out


MAX_ROWS = 1024  # held-out rows scored at most (whole problems are kept together)


def select_rows(rows: Sequence[dict], cap: int = MAX_ROWS) -> list[dict]:
    """The first problems (in order of first appearance) whose rows fit in `cap`, all rows of each problem."""
    by_task: dict[str, list[dict]] = {}
    for row in rows:
        by_task.setdefault(row["metadata"]["task_id"], []).append(row)
    out: list[dict] = []
    for group in by_task.values():
        if len(out) + len(group) > cap:
            break
        out.extend(group)
    return out


def load_report_rows(datasets_root: Path, sources: list[str], split: str, suffix: str | None,
                     cap: int = MAX_ROWS) -> list[dict]:
    """Processed correct AND incorrect rows of `split` (each source's processed/ and processed_incorrect/ files)."""
    from wmtp_core.data.loading import load_processed

    rows = load_processed(Path(datasets_root), sources, split, suffix=suffix, include_incorrect=True)
    return select_rows([dict(r) for r in rows], cap)


def stage1_critic_report(cfg: Any, model: nn.Module, head: nn.Module, tokenizer: Any,
                         constant: float | None) -> dict[str, Any] | None:
    """The automatic end-of-Stage-1 report on the run's validation split (correct + incorrect rows of its
    sources, cfg.data.suffix); None (with the reason on stderr) when that split's files do not exist."""
    import sys

    from wmtp_core.data.errors import DatasetError

    split = "validation"
    try:
        rows = load_report_rows(cfg.resolved_path("datasets_root"), list(cfg.data.sources), split, cfg.data.suffix)
    except DatasetError as exc:
        print(f"critic report skipped (no held-out rows): {exc}", file=sys.stderr)
        return None
    if not rows:
        print(f"critic report skipped: split {split!r} has no rows", file=sys.stderr)
        return None
    name = f"{split}_{cfg.data.suffix}" if cfg.data.suffix else split
    return critic_report(model, head, tokenizer, rows, cfg.verifiable.critic, name, cfg.data.max_len,
                         constant=constant, seed=cfg.run.seed)
