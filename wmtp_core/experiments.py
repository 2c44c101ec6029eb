"""The experiments: one registry, one spelling per experiment (recipe file, YAML, flow, CLI, deployments, MLflow).

Each `Spec` says what an experiment is made of: its recipe (`configs/recipe.<name>.yaml`), the stages it trains,
whether it needs the Rho-1 reference model and whether its Stage 2 needs Stage 1's value head. Presets only
shrink a run; which stages run is the registry's (or an explicit `--stages` / `TrainJob.stages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from wmtp_core import paths

ExperimentName = Literal["baseline", "verifiable", "rho1"]
StageName = Literal["stage1", "stage2"]

# The micro-world Rho-1 reference: a second slice of the same base (same tokenizer), half the policy's FFN width
# and another seed, so it is a different, weaker model. `wmtp build-micro --reference` and the flow's
# build-reference step both build it from these numbers, at paths.MICRO_REFERENCE_DIR.
MICRO_REFERENCE_SEED = 1
MICRO_REFERENCE_FFN = {"default": 512, "tiny": 64}


@dataclass(frozen=True)
class Spec:
    name: ExperimentName
    stages: tuple[StageName, ...]  # what a full run trains, in order
    needs_reference: bool  # Rho-1: a reference model sharing the tokenizer
    needs_stage1: bool  # Stage 2 weights tokens with the value head Stage 1 trains

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
    "baseline": Spec("baseline", ("stage2",), needs_reference=False, needs_stage1=False),
    "verifiable": Spec("verifiable", ("stage1", "stage2"), needs_reference=False, needs_stage1=True),
    "rho1": Spec("rho1", ("stage2",), needs_reference=True, needs_stage1=False),
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
