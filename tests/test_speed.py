"""The speed benchmark and the fast path: the quick benchmark's table and JSON, compiled vs eager steps (same
losses, parameters and actions to float tolerance), Mish's compile form, no host sync in a step (CUDA), `--compile`
and its auto default, the malloc setting in the benchmark's machine record.

Compiling takes tens of seconds on a 2-core CPU, so the compiled-vs-eager check runs Diffusion-QL in CI; DTQL
and EDA run with OFFDIFF_COMPILE_TESTS=all. No test asserts a speed: figures live in the benchmark.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from offdiff.algorithm import Algorithm, EnvSpec
from offdiff.bench.report import REFERENCES
from offdiff.cli import main
from offdiff.config import apply_overrides, budget_fields
from offdiff.data.buffer import DeviceBuffer
from offdiff.errors import OffdiffError
from offdiff.nets import Mish, in_row_chunks, mish, mish_one_exp, rows_per_call
from offdiff.registry import get_algorithm
from offdiff.testing import random_transitions
from offdiff.train.compile import AUTO_MIN_STEPS, compile_steps, resolve_compile
from offdiff.train.runner import TrainRequest, plan, train

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))
TINY = {
    "dql": {"hidden": 32, "batch_size": 16, "eval_candidates": 4},
    "dtql": {"diffusion_hidden": 32, "policy_hidden": 32, "critic_hidden": 32, "batch_size": 16,
             "eval_candidates": 4},
    "eda": {"hidden": 32, "time_dim": 8, "num_blocks": 1, "critic_hidden": 16, "behavior_batch_size": 16,
            "critic_batch_size": 16, "align_batch_size": 4, "num_candidates": 4, "solver_nfe": 3,
            "eval_candidates": 2},
}
NOISE_GRADIENT = 1e-6
ALL_COMPILE = os.environ.get("OFFDIFF_COMPILE_TESTS") == "all"
SLOW_COMPILE = pytest.mark.skipif(not ALL_COMPILE, reason="compiling it takes minutes on 2 cores; "
                                                          "set OFFDIFF_COMPILE_TESTS=all")


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_benchmark_prints_a_table_and_writes_json(tmp_path, capsys, restore_threads):
    out = tmp_path / "speed" / "quick.json"
    assert main(["bench", "speed", "--quick", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    machine = payload["machine"]
    assert machine["threads"] == 1 and machine["torch"] == torch.__version__ and machine["cpu_cores"] >= 1
    assert len(machine["load_average_start"]) == 3 and machine["cpu_model"]
    assert machine["malloc"] != "default" or platform.libc_ver()[0] != "glibc", "the bench tunes malloc as train does"
    assert payload["command"].startswith("offdiff bench speed --algos dql,dtql,eda --device cpu --modes eager")
    rows = payload["results"]
    found = {(r["algo"], r["measure"], r["label"]) for r in rows}
    for algo in ("dql", "dtql", "eda"):
        assert {(algo, "act", f"{n} envs") for n in (1, 10, 20)} <= found
    assert {k for k in REFERENCES} <= found, "every reference figure is measured"
    assert ("eda", "alignment_set", "4 states") in found
    for r in rows:
        numbers = [r["value"], r["peak_memory_mb"], *r["repeats"]]
        assert all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in numbers), r
        assert r["warmup_s"] >= 0 and r["unit"] in ("steps/s", "actions/s", "states/s")
        if r["reference"] is not None:
            assert r["ratio_to_reference"] == pytest.approx(r["value"] / r["reference"])
    table = [line for line in printed.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == len(rows) + 1 and "ratio" in table[0]
    assert out.with_suffix(".md").read_text().splitlines()[0] == printed.splitlines()[0]


@pytest.mark.parametrize(("argv", "message"), [
    (["--modes", "graphs"], "left out"),
    (["--modes", "eager,fast"], "unknown mode"),
    (["--algos", "nope"], "nope"),
    (["--threads", "0"], "--threads"),
    (["--reference", "missing.json"], "not a JSON file"),
    (["--reference", "{\"figures\": {\"dql train mian\": 3}}"], "unknown figure(s) ['dql train mian']"),
    (["--reference", "{\"figures\": {\"dql train main\": -1}}"], "non-positive value(s) ['dql train main']"),
    (["--concurrent", "0"], "--concurrent takes numbers of loops >= 1"),
    (["--concurrent", "two"], "--concurrent takes numbers of loops >= 1"),
    (["--mps"], "--mps runs concurrent loops through CUDA MPS"),
])
def test_bad_benchmark_arguments_are_one_line_errors(tmp_path, capsys, argv, message):
    if argv[0] == "--reference" and argv[1].startswith("{"):
        (tmp_path / "ref.json").write_text(argv[1])
        argv = ["--reference", str(tmp_path / "ref.json")]
    assert main(["bench", "speed", "--quick", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("offdiff: error:") and message in err and "\n" not in err


def test_reference_file_replaces_the_issue_figures(tmp_path, capsys, restore_threads):
    ref = tmp_path / "official-here.json"
    ref.write_text(json.dumps({"machine": "this one", "figures": {"dql train main": 8.0, "dql act 10 envs": 50.0}}))
    out = tmp_path / "quick.json"
    assert main(["bench", "speed", "--quick", "--algos", "dql", "--threads", "1", "--reference", str(ref),
                 "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["reference"] == str(ref) and "--reference" in payload["command"]
    by_label = {(r["measure"], r["label"]): r for r in payload["results"]}
    assert by_label[("train", "main")]["reference"] == 8.0 and by_label[("train", "main")]["goal_ratio"] == 1.5
    act10 = by_label[("act", "10 envs")]
    assert act10["ratio_to_reference"] == pytest.approx(act10["value"] / 50)
    assert by_label[("act", "20 envs")]["reference"] is None  # not in the file: no issue figure slips in


def test_concurrent_loops_report_their_aggregate_and_the_ratio_to_one_loop(tmp_path, capsys, restore_threads):
    out = tmp_path / "concurrent.json"
    assert main(["bench", "speed", "--quick", "--algos", "dql", "--concurrent", "2", "--threads", "1",
                 "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert "--concurrent 2" in payload["command"] and payload["settings"]["concurrent_loops"] == [1, 2]
    assert payload["failures"] == []
    rows = {(r["label"], r["size"]["loops"]): r for r in payload["results"]}
    assert set(rows) == {("main", 1), ("main", 2)} and all(r["measure"] == "concurrent" for r in rows.values())
    one, two = rows[("main", 1)], rows[("main", 2)]
    assert one["size"] == {"batch": 256, "loops": 1, "threads": 1} and one["speedup_over_one_loop"] == 1.0
    assert two["speedup_over_one_loop"] == pytest.approx(two["value"] / one["value"])
    assert all(math.isfinite(x) and x > 0 for r in rows.values() for x in [r["value"], *r["repeats"]])
    assert "| vs 1 loop |" in capsys.readouterr().out


@pytest.mark.parametrize("form", [mish, mish_one_exp], ids=["eager", "compile-form"])
def test_fast_mish_is_mish_with_its_gradients(form):
    x = torch.cat([torch.linspace(-100, 100, 20001), torch.tensor([-20.0, 20.0, 20.5, 0.0, 88.0, 1e4, -1e4])])
    torch.testing.assert_close(form(x), F.mish(x), rtol=2e-6, atol=2e-6)
    grad = x.clone().requires_grad_(True)
    (fast,) = torch.autograd.grad(form(grad).sum(), grad)
    (ref,) = torch.autograd.grad(F.mish(grad).sum(), grad)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    inner = torch.linspace(-15, 15, 3001, dtype=torch.float64, requires_grad=True)  # second derivative (float64)
    (fast,) = torch.autograd.grad(torch.autograd.grad(form(inner).sum(), inner, create_graph=True)[0].sum(), inner)
    (ref,) = torch.autograd.grad(torch.autograd.grad(F.mish(inner).sum(), inner, create_graph=True)[0].sum(), inner)
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)


def test_mish_module_backpropagates_through_the_fused_function():
    x = torch.randn(64, 32, requires_grad=True)
    y = Mish()(x)
    assert y.grad_fn is not None and "Mish" in type(y.grad_fn).__name__
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    (ref,) = torch.autograd.grad(F.mish(x).square().sum(), x)
    torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(Mish()(x), F.mish(x), rtol=2e-6, atol=2e-6)


def test_row_chunks_equal_one_call():
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), Mish(), torch.nn.Linear(16, 1))
    a, b = torch.randn(1000, 3), torch.randn(1000, 2)
    whole = net(torch.cat([a, b], dim=1)).squeeze(-1)
    chunked = in_row_chunks(lambda x, y: net(torch.cat([x, y], dim=1)).squeeze(-1), a, b, rows=128)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    assert rows_per_call(torch.device("cpu")) and rows_per_call(torch.device("meta")) is None


def _build(name: str, device: str) -> tuple[Algorithm, DeviceBuffer]:
    cls = get_algorithm(name)
    config = apply_overrides(cls.Config(), {**{k: 2 for k in budget_fields(cls.Config)}, **TINY[name]})
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


def _compiled_equals_eager(name: str, device: str) -> None:
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


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_compiled_updates_equal_eager_dql(device):
    _compiled_equals_eager("dql", device)


@SLOW_COMPILE
@pytest.mark.parametrize("name", ["dtql", "eda"])
@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_compiled_updates_equal_eager(name, device):
    _compiled_equals_eager(name, device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host syncs are only detectable on CUDA")
@pytest.mark.parametrize("name", ["dql", "dtql", "eda"])
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
    request = TrainRequest(algo="dtql", source="toy:grid25_far", steps=2, overrides=TINY["dtql"], device="cpu",
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
    request = TrainRequest(algo="dql", source="toy:four_corners", steps=2, overrides=TINY["dql"], device="cpu",
                           protocol={"eval_episodes": 2, "eval_envs": 2, "log_every": 2}, runs_root=tmp_path)
    train(request, progress=False)
    assert json.loads(plan(request).run_dir.manifest.read_text())["compile"] is False


def test_compile_without_a_cpp_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("offdiff.train.compile.shutil.which", lambda name: None)
    request = TrainRequest(algo="dql", source="toy:four_corners", steps=2, device="cpu", runs_root=tmp_path,
                           compile=True)
    with pytest.raises(OffdiffError, match="C\\+\\+ compiler"):
        train(request, progress=False)
