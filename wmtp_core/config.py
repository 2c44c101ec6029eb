"""Typed run configuration: defaults.yaml, then a recipe, then a preset, then `--set a.b=c` overrides.

The experiment's stages default to its registry entry (wmtp_core/experiments.py); a preset only shrinks a run.

Each layer is a partial mapping; layers are deep-merged (mappings merge key by key, lists and scalars replace)
and the result is validated once into `ResolvedConfig` (pydantic, extra="forbid" everywhere). A validation error
names the YAML file (or `--set`) that supplied the offending field, the dotted field path and the reason.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from wmtp_core import paths
from wmtp_core.experiments import EXPERIMENTS, ExperimentName, StageName, check_stages
from wmtp_core.weighting.strategies import Rho1Config, VerifiableConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class RunConfig(Strict):
    seed: int = 42
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # autocast dtype; auto: bf16 on cuda, else fp32
    output_root: Path | None = None  # None -> paths.RUNS_ROOT
    run_name: str | None = None


class PathsConfig(Strict):
    datasets_root: Path | None = None  # None -> paths.DATASETS_ROOT
    base_model_dir: Path | None = None  # None -> paths.BASE_MODEL_DIR
    micro_model_dir: Path | None = None  # None -> paths.MICRO_MODEL_DIR
    # Rho-1 only. None -> paths.MICRO_REFERENCE_DIR with model.use_micro_model, else paths.REFERENCE_MODEL_DIR
    reference_model_dir: Path | None = None


LoraTarget = Literal["wq", "wk", "wv", "wo", "w1", "w2", "w3"]


class LoraConfig(Strict):
    """LoRA adapters (peft) on the attention / feed-forward projections of every trunk and head block."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)  # update scale alpha / rank
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[LoraTarget] = Field(default_factory=lambda: ["wq", "wk", "wv", "wo", "w1", "w2", "w3"],
                                             min_length=1)


class ModelConfig(Strict):
    use_micro_model: bool = False
    activation_checkpointing: bool = False
    export_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    # what Stage 2 (and an unfrozen Stage 1 trunk) trains: every weight, LoRA adapters (base frozen, merged into
    # the exported model), or only the future-token head blocks (plus the last `heads_trunk_blocks` trunk blocks)
    finetune: Literal["full", "lora", "heads"] = "full"
    lora: LoraConfig = LoraConfig()
    heads_trunk_blocks: int = Field(0, ge=0)
    cpu_offload: bool = False  # FSDP2 CPUOffloadPolicy: parameters, gradients and AdamW state live in host memory


class DataConfig(Strict):
    sources: list[str] = Field(default_factory=lambda: ["codecontests", "mbpp"], min_length=1)
    split: str = "train"
    suffix: str | None = None  # "small" -> train_small.jsonl
    max_len: int = Field(2048, gt=8)  # must exceed every training prompt (checked before step 1: train/data.py)
    shuffle: bool = True

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, sources: list[str]) -> list[str]:
        from wmtp_core.data.schema import SOURCES

        unknown = [s for s in sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; expected some of {list(SOURCES)}")
        if len(set(sources)) != len(sources):
            raise ValueError(f"listed twice: {sorted({s for s in sources if sources.count(s) > 1})}")
        return sources


class OptimConfig(Strict):
    lr: float = Field(1.0e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0)
    eps: float = Field(1.0e-8, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    # AdamW kernel: fused (one kernel per step, no per-parameter temporaries; cpu/cuda/mps), foreach, or the
    # per-parameter loop; auto = fused where every parameter is a plain tensor on a device that supports it
    implementation: Literal["auto", "fused", "foreach", "loop"] = "auto"


class TrainConfig(Strict):
    batch_size: int = Field(4, ge=1)  # sequences per micro-batch
    grad_accum: int = Field(1, ge=1)  # micro-batches per optimizer step
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)  # caps optimizer steps per stage
    loss_impl: Literal["naive", "sequential"] = "sequential"
    chunk_size: int = Field(1024, ge=1)  # tokens per output-projection chunk in the sequential loss
    head_coefs: list[float] | None = None  # per-head loss coefficients; None -> all 1.0
    head_reduction: Literal["sum", "mean"] = "sum"  # over the MTP heads: sum (the MTP paper) or mean (sum / F)
    checkpoint_every: int = Field(100, ge=1)  # optimizer steps
    keep_checkpoints: int = Field(2, ge=1)  # newest checkpoints kept per stage
    log_every: int = Field(1, ge=1)
    progress_bar: bool = True
    # Before each checkpoint: the trainable parameters' L2 norm must stay within this factor of its value at the
    # start of the stage (sane fine-tuning moves it by a few percent; a diverged update by orders of magnitude);
    # None checks finiteness only
    max_param_norm_ratio: float | None = Field(100.0, gt=1)
    # CPU only: fixed glibc mmap threshold (MiB) so freed activations return to the OS — lower peak RSS, slower
    # steps (wmtp_core/train/allocator.py); None keeps glibc's default
    cpu_mmap_threshold_mb: float | None = Field(None, gt=0)


class Stage1Config(Strict):
    """Value-head pretraining (verifiable only): terminal reward from is_correct on correct AND incorrect rows."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(1.0e-4, gt=0)
    freeze_trunk: bool = True  # False: the trunk co-trains with the value head (trunk at optim.lr)
    value_hidden: int | None = None  # ValueHead MLP width; None -> linear head


class LoggingConfig(Strict):
    mlflow: bool = True
    experiment_name: str = "wmtp"
    tracking_uri: str | None = None  # None -> $MLFLOW_TRACKING_URI or sqlite under storage/mlflow
    heatmap_samples: int = Field(4, ge=0)
    histogram_every: int = Field(50, ge=1)  # optimizer steps between TD/weight histogram snapshots


class ResolvedConfig(Strict):
    experiment: ExperimentName
    stages: list[StageName] = Field(min_length=1)  # default: the experiment's stages (wmtp_core/experiments.py)
    run: RunConfig = RunConfig()
    paths: PathsConfig = PathsConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    stage1: Stage1Config = Stage1Config()
    verifiable: VerifiableConfig = VerifiableConfig()
    rho1: Rho1Config = Rho1Config()
    logging: LoggingConfig = LoggingConfig()
    sources: dict[str, str] = Field(default_factory=dict)  # layer name -> file path, for provenance

    @model_validator(mode="before")
    @classmethod
    def _registry_stages(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stages" not in data and data.get("experiment") in EXPERIMENTS:
            return {**data, "stages": list(EXPERIMENTS[data["experiment"]].stages)}
        return data

    @model_validator(mode="after")
    def _stages_fit_experiment(self) -> ResolvedConfig:
        problems = check_stages(self.experiment, self.stages)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resolved_path(self, name: str) -> Path:
        """A storage location with its paths.py default applied."""
        reference = paths.MICRO_REFERENCE_DIR if self.model.use_micro_model else paths.REFERENCE_MODEL_DIR
        defaults = {"datasets_root": paths.DATASETS_ROOT, "base_model_dir": paths.BASE_MODEL_DIR,
                    "micro_model_dir": paths.MICRO_MODEL_DIR, "reference_model_dir": reference}
        value = getattr(self.paths, name)
        return Path(value) if value is not None else defaults[name]

    @property
    def model_dir(self) -> Path:
        return self.resolved_path("micro_model_dir" if self.model.use_micro_model else "base_model_dir")

    @property
    def output_root(self) -> Path:
        return Path(self.run.output_root) if self.run.output_root is not None else paths.RUNS_ROOT


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names source, field and reason."""


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """New dict: mappings merge recursively, everything else in `over` replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def split_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ("a.b.c", value); the value is parsed as YAML (numbers, bools, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    if not all(key.strip().split(".")):
        raise ConfigError(f"--set {text!r}: empty key segment")
    try:
        value: Any = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML: {exc}") from exc
    return key.strip(), value


def nest(key: str, value: Any) -> dict[str, Any]:
    """("a.b.c", value) -> {"a": {"b": {"c": value}}}."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def parse_override(text: str) -> dict[str, Any]:
    """`a.b.c=value` -> {"a": {"b": {"c": value}}}; the value is parsed as YAML (numbers, bools, lists, null)."""
    return nest(*split_override(text))


def preset_path(config_path: Path, preset: str) -> Path:
    """A preset given by name lives in `<dir of defaults.yaml>/presets/<name>.yaml`; a path is used as is."""
    candidate = Path(preset)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return candidate
    return Path(config_path).parent / "presets" / f"{preset}.yaml"


def _has_path(tree: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = tree
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _explain(exc: ValidationError, layers: list[tuple[str, dict[str, Any]]]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "<root>"
        origin = next((name for name, tree in reversed(layers) if loc and _has_path(tree, loc)), None)
        if origin is None:  # a missing field or a whole-model check: blame the nearest layer holding the parent
            origin = next((name for name, tree in reversed(layers) if loc[:1] and _has_path(tree, loc[:1])),
                          layers[0][0])
        lines.append(f"{origin}: field {field}: {err['msg']}")
    return "invalid config:\n  " + "\n  ".join(lines)


def resolve_layers(layers: list[tuple[str, dict[str, Any]]]) -> ResolvedConfig:
    merged: dict[str, Any] = {}
    for _, tree in layers:
        merged = deep_merge(merged, tree)
    merged["sources"] = {name: name for name, _ in layers}
    try:
        return ResolvedConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, layers)) from None


def load_config(defaults: str | Path, recipe: str | Path, preset: str | None = None,
                overrides: list[str] | None = None) -> ResolvedConfig:
    """defaults <- recipe <- preset <- overrides, validated. `preset` is a name (configs/presets/<name>.yaml) or path."""
    layers: list[tuple[str, dict[str, Any]]] = [(str(defaults), read_yaml(Path(defaults))),
                                                (str(recipe), read_yaml(Path(recipe)))]
    if preset:
        ppath = preset_path(Path(defaults), preset)
        layers.append((str(ppath), read_yaml(ppath)))
    for text in overrides or []:
        layers.append((f"--set {text}", parse_override(text)))
    return resolve_layers(layers)


def config_dict(cfg: ResolvedConfig) -> dict[str, Any]:
    """JSON-ready dict of everything that determines the run (provenance `sources` excluded)."""
    return cfg.model_dump(mode="json", exclude={"sources"})


def config_hash(cfg: ResolvedConfig) -> str:
    """SHA256 of the canonical JSON of the resolved config (same settings -> same hash, whatever the files)."""
    canonical = json.dumps(config_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become their JSON text (for MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | dict) else value
    return out


def to_yaml(cfg: ResolvedConfig) -> str:
    return yaml.safe_dump(config_dict(cfg), sort_keys=False)
