"""The training contract: `TrainJob` (what to train) in, `TrainResult` (what was trained) out.

The flow builds one `TrainJob`, checks it by resolving the full config in its own process, and every
infrastructure block runs `wmtp train --job <job JSON>`; the human flags of `wmtp train` build a `TrainJob` the
same way (`job_from_args`). `TrainResult` is the one reader and writer of a run's `result.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wmtp_core.config import (
    ConfigError,
    ResolvedConfig,
    nest,
    preset_path,
    read_yaml,
    resolve_layers,
    split_override,
)
from wmtp_core.experiments import ExperimentName, StageName, spec
from wmtp_core.io import atomic_write_json, field_error, read_json

RESULT_FILE = "result.json"


class TrainJob(BaseModel):
    """One `wmtp train` invocation. Config layers: `config` <- the recipe <- `preset` <- the shortcut fields
    (stages, use_micro_model, dataset_suffix, device, paths, output_root, mlflow) <- `overrides` (dotted key ->
    value, in order). Relative file paths are relative to the directory the job runs in (the repository root)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: ExperimentName
    recipe: str | None = None  # None: the registry's configs/recipe.<experiment>.yaml
    config: str = "configs/defaults.yaml"
    preset: str | None = None
    stages: list[StageName] | None = None  # None: every stage of the experiment
    use_micro_model: bool = False
    dataset_suffix: str | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] | None = None
    paths: dict[str, str] = Field(default_factory=dict)  # PathsConfig field -> directory
    output_root: str | None = None
    run_name: str | None = None
    resume: str | None = None  # a checkpoint dir, or "auto"
    allow_config_change: bool = False
    mlflow: bool = True
    overrides: dict[str, Any] = Field(default_factory=dict)

    @property
    def recipe_path(self) -> str:
        return self.recipe or spec(self.experiment).recipe_arg

    def override_layers(self) -> list[tuple[str, dict[str, Any]]]:
        shortcuts: list[tuple[str, Any]] = []
        if self.stages is not None:
            shortcuts.append(("stages", list(self.stages)))
        if self.use_micro_model:
            shortcuts.append(("model.use_micro_model", True))
        if self.dataset_suffix is not None:
            shortcuts.append(("data.suffix", self.dataset_suffix))
        if self.device is not None:
            shortcuts.append(("run.device", self.device))
        shortcuts += [(f"paths.{key}", value) for key, value in self.paths.items()]
        if self.output_root is not None:
            shortcuts.append(("run.output_root", self.output_root))
        if not self.mlflow:
            shortcuts.append(("logging.mlflow", False))
        return [(f"--set {key}={_text(value)}", nest(key, value))
                for key, value in [*shortcuts, *self.overrides.items()]]

    def resolve(self, root: str | Path | None = None) -> ResolvedConfig:
        """The full config this job trains with (ConfigError naming file/field otherwise). `root`: the directory
        relative file paths are taken from (default: as given, i.e. the current directory)."""

        def where(path: str) -> Path:
            return Path(root) / path if root is not None and not Path(path).is_absolute() else Path(path)

        defaults, recipe = where(self.config), where(self.recipe_path)
        layers = [(str(defaults), read_yaml(defaults)), (str(recipe), read_yaml(recipe))]
        if self.preset:
            preset = preset_path(defaults, self.preset)
            layers.append((str(preset), read_yaml(preset)))
        cfg = resolve_layers([*layers, *self.override_layers()])
        if cfg.experiment != self.experiment:
            raise ConfigError(f"{recipe}: field experiment: {cfg.experiment!r}, but the job is for {self.experiment!r}")
        return cfg

    def argument(self) -> str:
        """The `wmtp train --job` argument for this job (its JSON, only the fields that differ from the defaults)."""
        return self.model_dump_json(exclude_defaults=True)

    @classmethod
    def parse(cls, text: str) -> TrainJob:
        """`--job` value: inline JSON (starting with `{`) or the path of a JSON file."""
        where = "--job" if text.lstrip().startswith("{") else text
        try:
            data = json.loads(text) if where == "--job" else read_json(text, ConfigError, expect=dict)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--job: invalid JSON: {exc.msg}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {field_error(exc)}") from None


def overrides_from(texts: list[str]) -> dict[str, Any]:
    """`--set` texts (`a.b=value`) as TrainJob.overrides, in order (a repeated key applies at its last position)."""
    overrides: dict[str, Any] = {}
    for text in texts:
        key, value = split_override(text)
        overrides.pop(key, None)
        overrides[key] = value
    return overrides


def job_from_args(args: Any) -> TrainJob:
    """The `wmtp train` flags (`--recipe`, `--preset`, `--set`, ...) as a TrainJob; the experiment is the recipe's."""
    experiment = read_yaml(Path(args.recipe)).get("experiment")
    overrides = overrides_from(args.overrides)
    fields = dict(experiment=experiment, recipe=str(args.recipe), config=str(args.config), preset=args.preset,
                  stages=args.stages.split(",") if args.stages else None, use_micro_model=args.use_micro_model,
                  dataset_suffix=args.dataset_suffix, device=args.device, run_name=args.run_name,
                  resume=args.resume, allow_config_change=args.allow_config_change, mlflow=not args.no_mlflow,
                  overrides=overrides)
    try:
        return TrainJob.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError(f"{args.recipe}: {field_error(exc)}") from None


class TrainResult(BaseModel):
    """A run's `result.json`: where its outputs are and what it measured."""

    model_config = ConfigDict(extra="forbid")

    output_dir: Path
    checkpoint_dir: Path
    model_dir: Path | None  # exported model (from_pretrained-loadable); None when the run stopped early
    value_head_path: Path | None
    mlflow_run_id: str | None
    final_metrics: dict[str, float]
    weights_sha256: str | None  # SHA256 of the exported weights (metadata.json of model_dir)
    config_hash: str
    completed: bool
    result_path: Path
    history_path: Path
    value_head_sha256: str | None = None  # SHA256 of value_head_path (a fetch from a remote run checks it)

    def write(self) -> Path:
        return atomic_write_json(self.result_path, self.model_dump(mode="json"))

    @classmethod
    def from_mapping(cls, data: Any, where: str | Path) -> TrainResult:
        """A result already parsed from JSON (e.g. read back from a remote volume); ValueError naming `where`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{where}: {field_error(exc)}") from None

    @classmethod
    def read(cls, path: str | Path) -> TrainResult:
        return cls.from_mapping(read_json(path, expect=dict), path)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
