"""Config layering: shipped YAMLs validate, merge order, strict fields with the source named, hashing."""

from pathlib import Path

import pytest

from wmtp_core import paths
from wmtp_core.config import ConfigError, config_dict, config_hash, flatten, load_config, parse_override

CONFIGS = paths.REPO_ROOT / "configs"
DEFAULTS = CONFIGS / "defaults.yaml"
RECIPES = sorted(CONFIGS.glob("recipe.*.yaml"))
PRESETS = sorted(p.stem for p in (CONFIGS / "presets").glob("*.yaml"))


def test_shipped_files_exist() -> None:
    assert {p.name for p in RECIPES} == {"recipe.baseline.yaml", "recipe.verifiable.yaml",
                                         "recipe.rho1.yaml"}
    assert {"local-light", "smoke"} <= set(PRESETS)


@pytest.mark.parametrize("preset", [None, *PRESETS])
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_combination_validates(recipe: Path, preset: str | None) -> None:
    cfg = load_config(DEFAULTS, recipe, preset)
    assert recipe.name == f"recipe.{cfg.experiment}.yaml"
    assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.weight_decay == 0.1 and cfg.optim.grad_clip == 1.0


def test_presets_shrink_runs_and_the_registry_decides_stages() -> None:
    ver = load_config(DEFAULTS, CONFIGS / "recipe.verifiable.yaml", "local-light")
    assert ver.train.batch_size == 1 and ver.train.epochs == 0.1
    expected = {"baseline": ["stage2"], "verifiable": ["stage1", "stage2"], "rho1": ["stage2"]}  # design table
    for name, stages in expected.items():
        for preset in [None, *PRESETS]:
            assert load_config(DEFAULTS, CONFIGS / f"recipe.{name}.yaml", preset).stages == stages, (name, preset)
    # the design's laptop run of verifiable (Stage 1 only) is an explicit stage choice, not a preset rule
    assert load_config(DEFAULTS, CONFIGS / "recipe.verifiable.yaml", "local-light", ["stages=[stage1]"]).stages == [
        "stage1"]


def test_old_experiment_spelling_is_rejected(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.old.yaml"
    recipe.write_text("experiment: rho1_weighted\n")
    with pytest.raises(ConfigError, match=r"recipe.old.yaml: field experiment: Input should be 'baseline', "
                                          r"'verifiable' or 'rho1'"):
        load_config(DEFAULTS, recipe)


def test_merge_order_defaults_recipe_preset_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("experiment: baseline\nstages: [stage2]\ntrain: {batch_size: 3, grad_accum: 5}\n"
                      "optim: {lr: 0.5}\n")
    preset = tmp_path / "p.yaml"
    preset.write_text("train: {batch_size: 7}\n")
    cfg = load_config(DEFAULTS, recipe, str(preset), ["train.grad_accum=9"])
    assert cfg.train.batch_size == 7  # preset over recipe
    assert cfg.train.grad_accum == 9  # override over recipe
    assert cfg.optim.lr == 0.5  # recipe over defaults
    assert cfg.train.loss_impl == "sequential"  # defaults kept where nobody overrides
    assert cfg.data.sources == ["codecontests", "mbpp"]


def test_extra_field_rejected_naming_file_and_field(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.bad.yaml"
    recipe.write_text("experiment: baseline\nstages: [stage2]\ntrain:\n  batch_sise: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULTS, recipe)
    assert str(recipe) in str(err.value) and "train.batch_sise" in str(err.value)
    assert "Extra inputs are not permitted" in str(err.value)


def test_bad_override_named() -> None:
    with pytest.raises(ConfigError, match=r"--set optim.lr=-1: field optim.lr"):
        load_config(DEFAULTS, CONFIGS / "recipe.baseline.yaml", None, ["optim.lr=-1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("optim.lr")


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("experiment: baseline\ntrain: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(DEFAULTS, recipe)


def test_stage1_rejected_outside_verifiable() -> None:
    with pytest.raises(ConfigError, match="stage1 not a stage of 'baseline'"):
        load_config(DEFAULTS, CONFIGS / "recipe.baseline.yaml", None, ["stages=[stage1, stage2]"])
    with pytest.raises(ConfigError, match="in the order stage1, stage2"):
        load_config(DEFAULTS, CONFIGS / "recipe.verifiable.yaml", None, ["stages=[stage2, stage1]"])


def test_missing_preset_named() -> None:
    with pytest.raises(ConfigError, match="no-such-preset.yaml: config file not found"):
        load_config(DEFAULTS, CONFIGS / "recipe.baseline.yaml", "no-such-preset")


def test_override_value_types() -> None:
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("x=[1, 2]") == {"x": [1, 2]}
    assert parse_override("y=null") == {"y": None}
    assert parse_override("z=true") == {"z": True}


def test_config_hash_tracks_values_not_files(tmp_path: Path) -> None:
    recipe = CONFIGS / "recipe.baseline.yaml"
    a = load_config(DEFAULTS, recipe)
    copy = tmp_path / "same.yaml"
    copy.write_text(recipe.read_text())
    assert config_hash(a) == config_hash(load_config(DEFAULTS, copy))
    assert config_hash(a) != config_hash(load_config(DEFAULTS, recipe, None, ["optim.lr=0.001"]))


def test_flatten_for_params() -> None:
    flat = flatten(config_dict(load_config(DEFAULTS, CONFIGS / "recipe.verifiable.yaml")))
    assert flat["optim.lr"] == 1e-5 and flat["verifiable.critic.gamma"] == 0.99
    assert flat["stages"] == '["stage1", "stage2"]'


def test_unknown_or_repeated_data_source_rejected_at_load() -> None:
    with pytest.raises(ConfigError, match=r"--set data.sources=\[mbpp,codecontest\]: field data.sources: .*"
                       r"unknown source\(s\) \['codecontest'\]"):
        load_config(DEFAULTS, CONFIGS / "recipe.baseline.yaml", None, ["data.sources=[mbpp,codecontest]"])
    with pytest.raises(ConfigError, match=r"field data.sources: .*listed twice: \['mbpp'\]"):
        load_config(DEFAULTS, CONFIGS / "recipe.baseline.yaml", None, ["data.sources=[mbpp,mbpp]"])
