"""Single-process behaviour of the distributed runtime: env parsing, no-op reductions, plain-module paths."""

from __future__ import annotations

import pytest
import torch

from wmtp_core import distributed as wd


def test_no_torchrun_variables_is_single_rank():
    assert wd.detect_env({}) == wd.DistEnv(rank=0, world_size=1, local_rank=0, launched=False)


def test_torchrun_variables_are_parsed():
    env = wd.detect_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.launched) == (3, 4, 1, True)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RANK": "0"}, "WORLD_SIZE, LOCAL_RANK missing"),
        ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK='x' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK=2 outside [0, WORLD_SIZE=2)"),
        ({"RANK": "0", "WORLD_SIZE": "0", "LOCAL_RANK": "0"}, "WORLD_SIZE=0 must be >= 1"),
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "2"}, "LOCAL_RANK=2 must be in [0, RANK=1]"),
    ],
)
def test_bad_environment_is_a_clear_error(environ, message):
    with pytest.raises(ValueError, match="environment: ") as info:
        wd.detect_env(environ)
    assert message in str(info.value)


def test_backend_follows_device():
    assert wd.backend_for(torch.device("cpu")) == "gloo"
    assert wd.backend_for(torch.device("cuda", 0)) == "nccl"


def test_single_process_helpers_are_local(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    env, device = wd.init_distributed("cpu")
    assert not env.launched and device == torch.device("cpu") and not wd.is_initialized()
    assert wd.is_main() and wd.get_rank() == 0 and wd.get_world_size() == 1
    x = torch.tensor([1.5, 2.0])
    summed = wd.all_reduce_sum(x)
    assert torch.equal(summed, x) and summed is not x
    assert wd.global_token_count(torch.tensor(17)) == 17 and wd.global_token_count(5) == 5


def test_shard_model_without_process_group_returns_the_plain_module():
    model = torch.nn.Linear(3, 2)
    assert wd.shard_model(model, torch.device("cpu")) is model
    assert not wd.is_sharded(model)


def test_mixed_precision_policy_is_bf16_only_on_cuda():
    assert wd.mixed_precision_policy(torch.device("cpu")).param_dtype is None
    cuda = wd.mixed_precision_policy(torch.device("cuda", 0))
    assert (cuda.param_dtype, cuda.reduce_dtype) == (torch.bfloat16, torch.float32)


def test_clip_grad_norm_reports_the_norm_before_clipping():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert wd.clip_grad_norm([p], 1.0) == pytest.approx(5.0)
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8]), atol=1e-6)


def test_gather_full_state_dict_of_a_plain_module_is_a_cpu_copy():
    model = torch.nn.Linear(3, 2)
    state = wd.gather_full_state_dict(model)
    assert set(state) == {"weight", "bias"}
    state["weight"].zero_()
    assert model.weight.abs().sum() > 0


def test_reduce_metrics_without_process_group_is_identity():
    assert wd.reduce_metrics({"loss": 1.5, "ce": 2.0}, summed=["loss"]) == {"loss": 1.5, "ce": 2.0}


def test_unsharded_copy_of_a_plain_module_has_the_same_weights():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    copy = wd.unsharded_copy(model, lambda: torch.nn.Linear(3, 2))
    assert copy is not model
    assert torch.equal(copy.weight, model.weight) and torch.equal(copy.bias, model.bias)
