"""The experiments: one registry, one spelling per experiment (recipe file, YAML, flow, CLI, deployments, MLflow).

Each `Spec` says what an experiment is made of: its recipe (`configs/recipe.<name>.yaml`), the stages it trains,
whether it needs the Rho-1 reference model, whether its Stage 2 needs Stage 1's value head, and how its Stage 2
weighting strategy is built (`Spec.strategy`: the trainer builds every strategy through it, no branch on the name).
Presets only shrink a run; which stages run is the registry's (or an explicit `--stages` / `TrainJob.stages`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from wmtp_core import paths

if TYPE_CHECKING:  # the strategies import torch; the registry stays light (flows and deployments read it)
    from wmtp_core.weighting.strategies import WeightingStrategy

ExperimentName = Literal["baseline", "verifiable", "rho1"]
StageName = Literal["stage1", "stage2"]

# The micro-world Rho-1 reference: a second slice of the same base (same tokenizer), half the policy's FFN width
# and another seed, so it is a different, weaker model. `wmtp build-micro --reference` and the flow's
# build-reference step both build it from these numbers, at paths.MICRO_REFERENCE_DIR.
MICRO_REFERENCE_SEED = 1
MICRO_REFERENCE_FFN = {"default": 512, "tiny": 64}


def baseline_strategy(**_: Any) -> WeightingStrategy:
    """Baseline: weight 1 on every response token (needs nothing)."""
    from wmtp_core.weighting.strategies import BaselineStrategy

    return BaselineStrategy()


def verifiable_strategy(*, value_head: Any = None, verifiable: Any = None, constant_value: float | None = None,
                        **_: Any) -> WeightingStrategy:
    """Verifiable critic: the value head, `verifiable` config (default when None) and, for mode constant_critic,
    the Stage 1 mean value."""
    from wmtp_core.weighting.strategies import VerifiableConfig, VerifiableStrategy

    if value_head is None:
        raise ValueError("strategy 'verifiable' needs value_head")
    return VerifiableStrategy(value_head, verifiable or VerifiableConfig(), constant_value)


def rho1_strategy(*, ref_model: Any = None, rho1: Any = None, **_: Any) -> WeightingStrategy:
    """Rho-1: the reference model (sharing the tokenizer) and `rho1` config (default when None)."""
    from wmtp_core.weighting.strategies import Rho1Config, Rho1Strategy

    if ref_model is None:
        raise ValueError("strategy 'rho1' needs ref_model (a reference Transformer sharing the tokenizer)")
    return Rho1Strategy(ref_model, rho1 or Rho1Config())


# Keyword arguments every builder accepts (each takes what it needs): value_head, verifiable (VerifiableConfig),
# ref_model, rho1 (Rho1Config), constant_value (the Stage 1 mean value).
StrategyBuilder = Callable[..., "WeightingStrategy"]


@dataclass(frozen=True)
class Spec:
    name: ExperimentName
    stages: tuple[StageName, ...]  # what a full run trains, in order
    needs_reference: bool  # Rho-1: a reference model sharing the tokenizer
    needs_stage1: bool  # Stage 2 weights tokens with the value head Stage 1 trains
    strategy: StrategyBuilder  # builds its Stage 2 WeightingStrategy from keyword arguments (see above)

    @property
    def recipe(self) -> Path:
        return paths.REPO_ROOT / "configs" / f"recipe.{self.name}.yaml"

    @property
    def recipe_arg(self) -> str:
        """The recipe path relative to the repository root (where every job runs `wmtp train`)."""
        return f"configs/recipe.{self.name}.yaml"

    def reference_dir(self, use_micro_model: bool) -> Path:
        """The reference model's standard place (what `reference_command` writes)."""
        return paths.MICRO_REFERENCE_DIR if use_micro_model else paths.REFERENCE_MODEL_DIR

    def reference_command(self, use_micro_model: bool, reference_dir: Path | None = None) -> str:
        """The one command that builds the reference model (at its standard place unless `reference_dir`)."""
        command = ("wmtp build-micro --reference" if use_micro_model
                   else "wmtp convert-reference --source <Hugging Face checkpoint dir>")
        if reference_dir is not None and Path(reference_dir) != self.reference_dir(use_micro_model):
            command += f" --out {reference_dir}"
        return command

    def missing_reference(self, reference_dir: Path, use_micro_model: bool) -> str:
        """The error for a reference model that is not there, naming the command that builds it."""
        world = "micro-world reference" if use_micro_model else "converted reference"
        return (f"{Path(reference_dir) / 'metadata.json'} missing: {self.name} needs its {world} model; "
                f"build it with `{self.reference_command(use_micro_model, reference_dir)}`")


EXPERIMENTS: dict[str, Spec] = {
    "baseline": Spec("baseline", ("stage2",), needs_reference=False, needs_stage1=False,
                     strategy=baseline_strategy),
    "verifiable": Spec("verifiable", ("stage1", "stage2"), needs_reference=False, needs_stage1=True,
                       strategy=verifiable_strategy),
    "rho1": Spec("rho1", ("stage2",), needs_reference=True, needs_stage1=False, strategy=rho1_strategy),
}
assert tuple(EXPERIMENTS) == get_args(ExperimentName)


def spec(name: str) -> Spec:
    """The registry entry of `name`; a ValueError listing the known names for anything else."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment: expected one of {list(EXPERIMENTS)}, got {name!r}")
    return EXPERIMENTS[name]


def check_stages(name: str, stages: list[str] | tuple[str, ...]) -> list[str]:
    """Problems with running `stages` of experiment `name` (empty when they are a subset, in order, of its stages)."""
    allowed = spec(name).stages
    if not stages:
        return ["stages: at least one stage"]
    unknown = [s for s in stages if s not in allowed]
    if unknown:
        return [f"stages: {', '.join(unknown)} not a stage of {name!r} (its stages: {', '.join(allowed)})"]
    if list(stages) != [s for s in allowed if s in stages] or len(set(stages)) != len(stages):
        return [f"stages: must be unique and in the order {', '.join(allowed)}; got {list(stages)}"]
    return []
