"""The compiled training step: compiled vs eager steps of every registered plugin (same losses, parameters and
actions to float tolerance, at its `smoke_config`), no host sync in a step (CUDA), `--compile` and its auto default.

Compiling takes tens of seconds on a 2-core CPU, so CI checks Diffusion-QL's compiled step; every other registered
plugin runs with OFFDIFF_COMPILE_TESTS=all. No test asserts a speed: figures live in the speed benchmark.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch
from torch._dynamo.utils import counters

from offdiff.algorithm import Algorithm, EnvSpec
from offdiff.config import apply_overrides, budget_fields
from offdiff.data.buffer import DeviceBuffer
from offdiff.errors import OffdiffError
from offdiff.registry import get_algorithm, plugins
from offdiff.testing import random_transitions
from offdiff.train.compile import AUTO_MIN_STEPS, compile_steps, resolve_compile
from offdiff.train.runner import TrainRequest, plan, train

ALGOS = list(plugins())
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))
NOISE_GRADIENT = 1e-6
IN_CI = "dql"  # the plugin whose compiled step every run of the suite checks
ALL_COMPILE = os.environ.get("OFFDIFF_COMPILE_TESTS") == "all"
SLOW_COMPILE = pytest.mark.skipif(not ALL_COMPILE, reason="compiling it takes minutes on 2 cores; "
                                                          "set OFFDIFF_COMPILE_TESTS=all")


def _smoke(name: str) -> dict:
    return dict(get_algorithm(name).smoke_config)


def _build(name: str, device: str) -> tuple[Algorithm, DeviceBuffer]:
    cls = get_algorithm(name)
    config = apply_overrides(cls.Config(), {**{k: 2 for k in budget_fields(cls.Config)}, **cls.smoke_config})
    torch.manual_seed(0)
    spec = EnvSpec(obs_dim=5, act_dim=3, dataset_id="conformance/random-v0", task="conformance")
    algo = cls(config, spec, torch.device(device), torch.Generator(device).manual_seed(0))
    return algo, DeviceBuffer(random_transitions(n=64), device)


def _drive(algo: Algorithm, data: DeviceBuffer, compiled: bool) -> list[dict[str, torch.Tensor]]:
    """Every stage for its 2 steps, as the runner does (compile first, then begin_stage); the metrics of each."""
    sampler = torch.Generator(data.device).manual_seed(1)
    torch.manual_seed(1)  # the global stream: EDA's dropout while pretraining
    if compiled:
        compile_steps(algo)
    seen = []
    for stage in algo.stages():
        algo.begin_stage(stage.name, data)
        for step in range(stage.steps):
            seen.append(algo.update(stage.name, data.sample(stage.batch_size, sampler), step))
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == IN_CI else SLOW_COMPILE) for n in ALGOS])
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_compiled_updates_equal_eager(name, device):
    eager, data = _build(name, device)
    compiled, _ = _build(name, device)
    graphs = counters["stats"]["unique_graphs"]
    for a, b in zip(_drive(eager, data, False), _drive(compiled, data, True), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")
    for module_name, module in eager.modules().items():
        other = dict(compiled.modules()[module_name].named_parameters())
        for key, param in module.named_parameters():
            # Adam moves a parameter by about ±lr whatever its gradient's size, so a gradient that is zero but
            # for float noise (EDA's last energy bias: the alignment loss is shift-invariant) moves it randomly.
            if param.grad is None or param.grad.abs().max() > NOISE_GRADIENT:
                torch.testing.assert_close(other[key], param, rtol=1e-4, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")
    obs = torch.randn(3, 5, generator=torch.Generator().manual_seed(2)).to(device)
    with torch.no_grad():
        acted = [algo.act(obs, torch.Generator(device).manual_seed(3)) for algo in (eager, compiled)]
    torch.testing.assert_close(acted[1], acted[0], rtol=1e-4, atol=1e-5, msg=lambda m: f"act: {m}")
    assert counters["stats"]["unique_graphs"] > graphs, "the compiled run ran compiled graphs"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host syncs are only detectable on CUDA")
@pytest.mark.parametrize("name", ALGOS)
def test_no_host_sync_inside_a_training_step(name):
    algo, data = _build(name, "cuda")
    sampler = torch.Generator("cuda").manual_seed(1)
    for stage in algo.stages():
        algo.begin_stage(stage.name, data)
        algo.update(stage.name, data.sample(stage.batch_size, sampler), 0)  # first steps may allocate state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            algo.update(stage.name, data.sample(stage.batch_size, sampler), 1)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_train_with_compile_compiles_the_steps_once_and_records_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("offdiff.train.runner.compile_steps", lambda algo: calls.append(type(algo).__name__))
    request = TrainRequest(algo="dtql", source="toy:grid25_far", steps=2, overrides=_smoke("dtql"), device="cpu",
                           protocol={"eval_episodes": 2, "eval_envs": 2, "log_every": 2}, runs_root=tmp_path,
                           compile=True)
    train(request, progress=False)
    assert calls == ["DTQL"], "the plugin's steps are compiled once, for all its stages"
    assert json.loads(plan(request).run_dir.manifest.read_text())["compile"] is True
    eager = dataclasses.replace(request, compile=False)
    assert plan(eager).run_dir.path == plan(request).run_dir.path, "compiling is how a run executes, not what it is"


def test_a_stage_that_must_not_compile_runs_eagerly_and_compiling_twice_is_once():
    algo, data = _build("dql", "cpu")
    algo.compile_update = lambda stage: False
    compile_steps(algo)
    update = algo.update
    compile_steps(algo)
    assert algo.update is update, "compiling again keeps the compiled methods"
    graphs = counters["stats"]["unique_graphs"]
    algo.update("main", data.sample(16, torch.Generator().manual_seed(0)), 0)
    assert counters["stats"]["unique_graphs"] == graphs, "compile_update(stage) False: update ran eagerly"


def test_auto_compile_is_on_for_long_runs_where_the_device_can_compile(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_compile(None, cpu, AUTO_MIN_STEPS - 1) is False and resolve_compile(False, cpu, 10**7) is False
    monkeypatch.setattr("offdiff.train.compile.shutil.which", lambda name: "/usr/bin/g++")
    assert resolve_compile(None, cpu, AUTO_MIN_STEPS) is True
    monkeypatch.setattr("offdiff.train.compile.shutil.which", lambda name: None)
    assert resolve_compile(None, cpu, 10**7) is False, "auto falls back to eager where compiling cannot work"
    with pytest.raises(OffdiffError, match="C\\+\\+ compiler"):
        resolve_compile(True, cpu, 10)


def test_a_short_run_does_not_compile_by_default_and_records_it(tmp_path, monkeypatch):
    monkeypatch.setattr("offdiff.train.runner.compile_steps", lambda algo: pytest.fail("a short run compiled"))
    request = TrainRequest(algo="dql", source="toy:four_corners", steps=2, overrides=_smoke("dql"), device="cpu",
                           protocol={"eval_episodes": 2, "eval_envs": 2, "log_every": 2}, runs_root=tmp_path)
    train(request, progress=False)
    assert json.loads(plan(request).run_dir.manifest.read_text())["compile"] is False


def test_compile_without_a_cpp_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("offdiff.train.compile.shutil.which", lambda name: None)
    request = TrainRequest(algo="dql", source="toy:four_corners", steps=2, device="cpu", runs_root=tmp_path,
                           compile=True)
    with pytest.raises(OffdiffError, match="C\\+\\+ compiler"):
        train(request, progress=False)
