"""What do the shipped recipe's verifiable weights depend on: the critic's token-level signal, or position?

Two worlds, each: a Stage 1 critic, then the recipe's Stage 2 weighting pipeline (configs/recipe.verifiable.yaml's
`verifiable` section through the real VerifiableStrategy, no grad) on held-out rows in micro-batches of 8, for
mode critic, constant_critic and position_matched. Printed per mode (JSON):
  position_r2     share of the weights' variance explained by the distance-to-EOS bucket (1 - within / total)
  last10_share    weight mass on each row's last 10 response tokens
  ess, entropy    weight_ess / weight_entropy (position.weight_summary), pooled over micro-batches
  corr_constant   Pearson correlation of the per-token weights with constant_critic's
  bug_low_auroc   rows with a divergence point: AUROC of "the first divergent token gets a LOWER weight than the
                  other tokens of its row" (mean over rows; 0.5 = the weight does not single it out); on correct
                  rows (modes_correct_rows_only, what Stage 2 trains on) the point is the token the mutant changed,
                  and a value below 0.5 means that key token is UP-weighted
and the critic report (classification / localisation AUROC) of the same critic.

  planted: the planted-signal world (wmtp_core/data/planted.py, rule identity), micro critic trained as in
           Stage 1 with trunk co-training (PlantedSettings defaults, 80 CPU steps); constant = mean V on the rows.
  micro:   the micro model (default plan: dim 512, sliced from a synthetic random base, project code tokenizer) on the
           shipped data's small splits, `wmtp train --stages stage1` for --stage1-steps steps (batch 2); held-out =
           validation_small; constant = the Stage 1 mean value of that run.

Usage: uv run python benchmarks/weight_position.py [--world planted|micro|both] [--work DIR] [--stage1-steps N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wmtp_core import paths  # noqa: E402
from wmtp_core.config import load_config  # noqa: E402
from wmtp_core.data.collate import MTPCollator  # noqa: E402
from wmtp_core.eval.critic_metrics import auroc, divergence_points  # noqa: E402
from wmtp_core.eval.critic_report import critic_report, encode_rows  # noqa: E402
from wmtp_core.weighting.position import distance_buckets, distance_to_last  # noqa: E402
from wmtp_core.weighting.strategies import VerifiableConfig, make_strategy, target_mask  # noqa: E402

MODES = ("critic", "constant_critic", "position_matched")
CONFIGS = paths.REPO_ROOT / "configs"


def recipe_verifiable() -> VerifiableConfig:
    return load_config(CONFIGS / "defaults.yaml", CONFIGS / "recipe.verifiable.yaml").verifiable


@torch.no_grad()
def recipe_weights(model, head, tokenizer, rows, vcfg: VerifiableConfig, mode: str, constant: float,
                   batch: int = 8) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """[(weights (B, S), target mask (B, S), collated batch)] per micro-batch, through the real strategy."""
    encoded = encode_rows(tokenizer, rows, 2048)
    collate = MTPCollator(pad_id=getattr(tokenizer, "pad_id", tokenizer.eos_id), n_future=model.n_future)
    cfg = vcfg.model_copy(update={"mode": mode, "train_critic": False})
    strategy = make_strategy("verifiable", value_head=head, verifiable=cfg, constant_value=constant)
    out = []
    for start in range(0, len(encoded), batch):
        b = collate(encoded[start:start + batch])
        prep = strategy.prepare(b, model, model.trunk_forward(b["input_ids"]))
        out.append((prep.weights.float(), target_mask(b), {**b, "encoded": encoded[start:start + batch]}))
    return out


def only_correct(parts):
    """The same micro-batches restricted to correct rows (what Stage 2 trains on)."""
    return [(w, mask & b["is_correct"].bool()[:, None], b) for w, mask, b in parts]


def summarise(parts, reference=None, marks: str = "divergent") -> dict:
    w = torch.cat([p[0][p[1]] for p in parts])
    buckets = torch.cat([distance_buckets(p[1])[p[1]] for p in parts])
    near = torch.cat([(distance_to_last(p[1]) < 10)[p[1]] for p in parts])
    total = ((w - w.mean()) ** 2).sum()
    within = sum(((w[buckets == k] - w[buckets == k].mean()) ** 2).sum() for k in buckets.unique())
    n = w.numel()
    res = {"tokens": n, "position_r2": round(float(1 - within / total), 4) if total > 0 else None,
           "last10_share": round(float(w[near].sum() / w.sum()), 4),
           "ess": round(float(w.sum() ** 2 / (n * (w**2).sum())), 4),
           "entropy": round(float(-(w / w.sum() * (w / w.sum()).clamp_min(1e-38).log()).sum() / torch.log(
               torch.tensor(float(n)))), 4),
           "weight_max": round(float(w.max()), 3), "bug_low_auroc": _bug_low(parts, marks)}
    if reference is not None:
        r = torch.cat([p[0][p[1]] for p in reference])
        res["corr_constant"] = round(float(torch.corrcoef(torch.stack([w, r]))[0, 1]), 4) if w.std() > 0 else None
    return res


def _bug_low(parts, marks: str) -> float | None:
    scores = []
    for w, mask, b in parts:
        enc = b["encoded"]
        for row, d in b.get(marks, {}).items():
            if not mask[row].any():
                continue
            u = enc[row]["response_start"] + d
            others = mask[row].clone()
            others[u] = False
            a = auroc(-w[row, u:u + 1], -w[row][others])
            if a is not None:
                scores.append(a)
    return round(sum(scores) / len(scores), 4) if scores else None


def attach_divergence(parts, tokenizer, rows) -> None:
    """Mark each micro-batch row's first divergent token (against a correct row of the same task anywhere)."""
    encoded = encode_rows(tokenizer, rows, 2048)
    points = divergence_points([e["input_ids"][e["response_start"]:] for e in encoded],
                               [bool(e["is_correct"]) for e in encoded], [e["task_id"] for e in encoded])
    keys = {}  # correct rows: the token their mutant changed (same index)
    for i, d in points.items():
        for j, e in enumerate(encoded):
            if e["is_correct"] and e["task_id"] == encoded[i]["task_id"]:
                keys[j] = d
    offset = 0
    for _, _, b in parts:
        n = len(b["encoded"])
        b["divergent"] = {i - offset: d for i, d in points.items() if offset <= i < offset + n}
        b["key"] = {i - offset: d for i, d in keys.items() if offset <= i < offset + n}
        offset += n


def analyse(model, head, tokenizer, rows, constant: float, report: dict) -> dict:
    vcfg = recipe_verifiable()
    parts = {m: recipe_weights(model, head, tokenizer, rows, vcfg, m, constant) for m in MODES}
    for p in parts.values():
        attach_divergence(p, tokenizer, rows)
    return {"constant_V": round(constant, 4), "recipe_weights": vcfg.weights.model_dump(),
            "critic_report": {k: report[k] for k in ("n_rows", "n_localisation_rows", "classification_auroc",
                                                     "localisation_auroc")},
            "modes": {m: summarise(parts[m], parts["constant_critic"]) for m in MODES},
            "modes_correct_rows_only": {m: summarise(only_correct(parts[m]), only_correct(parts["constant_critic"]),
                                                     "key") for m in MODES}}


def planted_world() -> dict:
    from wmtp_core.data.planted import planted_rows
    from wmtp_core.eval.planted_run import PlantedSettings, train_planted

    s = PlantedSettings()
    model, head, tok, _ = train_planted(s)
    rows = planted_rows(s.eval_problems, s.seed + 1)
    report = critic_report(model, head, tok, rows, s.critic, "planted", 256)
    encoded = encode_rows(tok, rows, 256)
    from wmtp_core.eval.critic_report import values_for

    values, mask, _ = values_for(model, head, encoded, tok.pad_id)
    constant = float(values[mask].mean())
    return analyse(model, head, tok, rows, constant, report)


def micro_world(work: Path, stage1_steps: int) -> dict:
    from wmtp_core.artifacts.convert import convert_meta_checkpoint
    from wmtp_core.artifacts.micro import MicroPlan, build_micro_model, write_synthetic_base
    from wmtp_core.eval.critic_report import load_report_rows
    from wmtp_core.model.adapter import MetaLlamaMTPAdapter
    from wmtp_core.model.value_head import ValueHead
    from wmtp_core.train.run import run_training
    from wmtp_core.train.stages import stage1_mean_value

    data = work / "datasets"
    if not (data / "mbpp" / "processed" / "train_small.jsonl").is_file():
        raise SystemExit(f"{data}: run `wmtp prepare-data --datasets-root {data}` on a copy of storage/datasets")
    micro = work / "micro"
    if not (micro / "metadata.json").is_file():
        src = write_synthetic_base(work / "synthetic-meta", paths.CODE_TOKENIZER)
        base = convert_meta_checkpoint(src, work / "base").out_dir
        build_micro_model(base, micro, plan=MicroPlan())
    cfg = load_config(CONFIGS / "defaults.yaml", CONFIGS / "recipe.verifiable.yaml", "local-light",
                      [f"paths.datasets_root={data}", f"paths.micro_model_dir={micro}", "model.use_micro_model=true",
                       f"run.output_root={work / 'runs'}", "run.device=cpu", "train.progress_bar=false",
                       "logging.mlflow=false", "data.suffix=small", "train.batch_size=2",
                       f"stage1.max_steps={stage1_steps}", "stages=[stage1]", "logging.histogram_every=100000"])
    result = run_training(cfg, run_name=f"weight-position-{stage1_steps}", resume="auto")
    history = json.loads(result.history_path.read_text())["stage1"]
    adapter = MetaLlamaMTPAdapter.from_pretrained(result.model_dir)
    head = ValueHead.load(result.value_head_path)
    rows = load_report_rows(data, list(cfg.data.sources), "validation", "small")
    report = json.loads((result.output_dir / "reports" / "critic_report.json").read_text())
    return analyse(adapter.model.eval(), head.eval(), adapter.tokenizer, rows, stage1_mean_value(history), report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=("planted", "micro", "both"), default="both")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--stage1-steps", type=int, default=60)
    args = parser.parse_args()
    torch.manual_seed(0)
    out = {}
    if args.world in ("planted", "both"):
        out["planted"] = planted_world()
    if args.world in ("micro", "both"):
        out["micro"] = micro_world(args.work or Path(tempfile.mkdtemp(prefix="wmtp-wpos-")), args.stage1_steps)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
