"""The shipped deployments: one per experiment of the registry, each running the whole DAG (upload included)."""

from pathlib import Path

import yaml

from flows.layout import LOCAL_VOLUME, Locations
from wmtp_core import paths
from wmtp_core.experiments import EXPERIMENTS


def test_one_deployment_per_experiment_each_uploading_by_default() -> None:
    from flows.wmtp import wmtp

    spec = yaml.safe_load((paths.REPO_ROOT / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = spec["deployments"]
    assert sorted(d["name"] for d in deployments) == sorted(EXPERIMENTS)
    for d in deployments:
        assert d["entrypoint"] == "flows/wmtp.py:wmtp"
        assert d["parameters"] == {"request": {"experiment": d["name"], "upload_target": LOCAL_VOLUME}}
        assert wmtp.validate_parameters(d["parameters"])["request"].experiment == d["name"]


def test_upload_destination(tmp_path: Path) -> None:
    loc = Locations.under(tmp_path / "storage")
    assert loc.upload_destination(LOCAL_VOLUME) == str((tmp_path / "storage").resolve() / "runs" / "_volume")
    assert loc.upload_destination(None) is None and loc.upload_destination("") is None
    assert loc.upload_destination("volume://store/vol/x") == "volume://store/vol/x"
    assert loc.upload_destination(str(tmp_path / "v")) == str(tmp_path / "v")
    assert Locations.under(None).upload_destination(LOCAL_VOLUME) == str(paths.RUNS_ROOT / "_volume")


def test_run_request_validates_the_flow_parameters() -> None:
    import pytest
    from pydantic import ValidationError

    from flows.request import RunRequest

    given = dict(experiment="rho1", preset="smoke", use_micro_model=True, dataset_suffix="small", base_checkpoint=None,
                 infrastructure="local", device="cpu", eval_dataset="mbpp", eval_limit=4, eval_n=1,
                 eval_max_new_tokens=64, upload_target=LOCAL_VOLUME, micro_plan="tiny",
                 train_overrides=["data.max_len=640"], storage_root=None, seed=3)
    request = RunRequest(**given)
    assert request.label == "rho1-s3" and request.overrides == ["data.max_len=640", "run.seed=3"]
    assert RunRequest(**{**given, "seed": None}).overrides == ["data.max_len=640"]
    with pytest.raises(ValidationError, match="experiment"):
        RunRequest(**{**given, "experiment": "rho1_weighted"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        RunRequest(**given, eval_top_p=0.5)
    with pytest.raises(ValidationError, match="eval_temperature"):
        RunRequest(**given, eval_temperature=-0.1)
    with pytest.raises(ValidationError, match="experiment"):  # no default experiment: a request names one
        RunRequest()


def test_the_flow_takes_one_request_whose_fields_the_schema_shows() -> None:
    """What Prefect's UI and a deployment see: one `request` parameter whose fields (with the defaults the flow
    had as loose parameters) are in the parameter schema; a deployment's dict validates, an unknown key does not."""
    import pytest
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema

    from flows.request import CompareRequest
    from flows.wmtp import wmtp, wmtp_compare

    schema = parameter_schema(wmtp).model_dump()
    assert list(schema["properties"]) == ["request"]
    fields = schema["definitions"]["RunRequest"]["properties"]
    expected = {"experiment", "preset", "use_micro_model", "dataset_suffix", "base_checkpoint", "infrastructure",
                "device", "eval_dataset", "eval_limit", "eval_n", "eval_max_new_tokens", "eval_temperature", "eval_speculative",
                "upload_target", "micro_plan", "train_overrides", "storage_root", "seed"}
    assert set(fields) == expected
    assert schema["definitions"]["RunRequest"]["additionalProperties"] is False
    assert sorted(fields["experiment"]["enum"]) == sorted(EXPERIMENTS)
    defaults = schema["properties"]["request"]["default"]
    assert (defaults["experiment"], defaults["preset"], defaults["eval_limit"], defaults["infrastructure"],
            defaults["upload_target"], defaults["train_overrides"]) == ("verifiable", "smoke", 4, "local", None, [])

    request = wmtp.validate_parameters({"request": {"experiment": "verifiable"}})["request"]
    assert (request.experiment, request.dataset_suffix, request.eval_max_new_tokens, request.seed) == \
        ("verifiable", "small", 64, None)
    assert (request.eval_temperature, request.eval_speculative) == (0.2, True)
    with pytest.raises(ParameterTypeError, match="eval_top_p"):
        wmtp.validate_parameters({"request": {"experiment": "verifiable", "eval_top_p": 0.5}})
    with pytest.raises(ParameterTypeError, match="experiment"):
        wmtp.validate_parameters({"request": {"experiment": "rho1_weighted"}})

    compare = wmtp_compare.validate_parameters({"request": {"experiments": ["baseline", "rho1"], "seeds": 2,
                                                            "eval_limit": 8}})["request"]
    runs = compare.runs()
    assert [(r.experiment, r.seed, r.eval_limit) for r in runs] == \
        [("baseline", 0, 8), ("baseline", 1, 8), ("rho1", 0, 8), ("rho1", 1, 8)]
    assert [(r.experiment, r.seed) for r in CompareRequest().runs()] == [(e, None) for e in EXPERIMENTS]
    with pytest.raises(ParameterTypeError, match="seeds"):
        wmtp_compare.validate_parameters({"request": {"seeds": 0}})


def test_eval_decoding_reaches_the_harness(tmp_path: Path, monkeypatch) -> None:
    """A greedy request: the eval step lets the harness decode speculatively (the stand-in model has extra heads)
    and records it; eval_speculative=False turns it off; the default (temperature 0.2) samples plainly."""
    from fixtures.orch import StandIns

    from flows.request import RunRequest
    from tasks.evaluate import evaluate
    from tasks.results import StageResult

    fakes = StandIns(monkeypatch, tmp_path / "stand-ins")
    stage = StageResult("stage2", "baseline", tmp_path, tmp_path / "model", None, None, None, {}, None, "local")
    greedy_plain = {"eval_temperature": 0.0, "eval_speculative": False}
    cases = [({"eval_temperature": 0.0}, None, True), (greedy_plain, False, False), ({}, None, False)]
    for i, (fields, speculative, ran) in enumerate(cases):
        request = RunRequest(experiment="baseline", **fields)
        summary = evaluate.fn(stage, dataset="mbpp", n=1, ks=[1], limit=4, out_dir=str(tmp_path / f"eval{i}"),
                              max_new_tokens=8, **request.eval_decoding, seed=0, device="cpu", parent_run_id=None)
        got = fakes.eval_calls[-1]
        assert (got["temperature"], got["speculative"], summary.speculative) == \
            (fields.get("eval_temperature", 0.2), speculative, ran)
