"""The benchmark harness without a cluster: grid specs, profiles, planning, the local and debug executors,
the cache phase, status and resubmission, killed and refused runs, and one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
import submitit
import torch

import offdiff.registry
from offdiff.algorithm import Stage
from offdiff.cli import main
from offdiff.errors import OffdiffError
from offdiff.harness.executors import get_executor
from offdiff.harness.grid import expand, load_grid
from offdiff.harness.profile import Profile, load_profile
from offdiff.harness.record import Record, harness_dir
from offdiff.harness.yamlspec import load_yaml
from offdiff.io import read_jsonl
from offdiff.records import RunDir
from offdiff.train.runner import train
from offdiff_dql import DiffusionQL

REPO = Path(__file__).resolve().parents[1]
SMALL = "hidden: 32, batch_size: 64, eval_candidates: 8"
PROTOCOL = "{eval_every: %d, eval_episodes: 10, eval_envs: 5, log_every: 50, checkpoint_every: 50}"


def grid_file(tmp_path: Path, algorithms: str, seeds: str = "[0, 1]", steps: int = 150, name: str = "g",
              datasets: str = "[toy:four_corners]") -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(f"name: {name}\ndatasets: {datasets}\nseeds: {seeds}\n"
                    f"budget: {{steps: {steps}}}\nprotocol: {PROTOCOL % steps}\n"
                    f"algorithms:\n{textwrap.indent(algorithms, '  ')}")
    return path


def profile_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(textwrap.dedent(text))
    return path


LOCAL = "executor: local\ngpus: 0\ncpus: 1\ntime_min: 30\narray_limit: 2\nruns_per_job: 2\n"
TWO_ENTRIES = f"""- name: bc
  algo: dql
  overrides: {{eta: 0.0, {SMALL}}}
- name: dql
  algo: dql
  overrides: {{eta: 2.5, {SMALL}}}
"""
ONE_ENTRY = f"- {{name: dql, algo: dql, overrides: {{{SMALL}}}}}\n"


def grid_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    code = main(["grid", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out + out.err


def cells_of(grid: Path, runs: Path) -> dict[int, list]:
    return {c.planned.request.seed: c for c in expand(load_grid(grid), runs.resolve())}


@pytest.mark.slow
def test_local_grid_end_to_end_then_nothing_to_submit(tmp_path, capsys):
    grid, runs = grid_file(tmp_path, TWO_ENTRIES), tmp_path / "runs"
    profile = profile_file(tmp_path, LOCAL)
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)
    assert code == 0, out
    assert "4 runs (0 done" in out and "jobs: 2 in 1 array(s)" in out and "4 done, 0 running" in out

    cells = expand(load_grid(grid), runs.resolve())
    assert len(cells) == 4 and all(c.planned.run_dir.is_done() for c in cells)
    assert all(c.planned.run_dir.path.is_relative_to(runs.resolve() / "g" / "dql") for c in cells)
    manifests = [json.loads(c.planned.run_dir.manifest.read_text()) for c in cells]
    assert sorted((m["config"]["eta"], m["seed"]) for m in manifests) == [(0.0, 0), (0.0, 1), (2.5, 0), (2.5, 1)]
    assert all(len(read_jsonl(c.planned.run_dir.evals)) == 1 for c in cells)

    record = Record(harness_dir(runs.resolve(), "g"))
    [submission] = record.submissions
    assert submission.executor == "local" and [len(j.runs) for j in submission.jobs] == [2, 2]
    assert sorted(k for j in submission.jobs for k in j.runs) == sorted(c.key for c in cells)
    for job in submission.jobs:
        outcomes = json.loads((harness_dir(runs.resolve(), "g") / "outcomes" / f"{job.id}.json").read_text())
        assert {o["state"] for o in outcomes.values()} == {"done"} and set(outcomes) == set(job.runs)

    # Submitted again: everything is DONE, nothing is submitted or touched.
    stamps = {c.key: c.planned.run_dir.done_marker.stat().st_mtime_ns for c in cells}
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)
    assert code == 0 and "to submit: 0" in out and "nothing to submit" in out
    assert len(Record(harness_dir(runs.resolve(), "g")).submissions) == 1
    assert stamps == {c.key: c.planned.run_dir.done_marker.stat().st_mtime_ns for c in cells}
    code, out = grid_cli(capsys, "status", grid, "--runs-dir", runs)
    assert code == 0 and "4 runs: 4 done, 0 running, 0 pending, 0 failed" in out


def test_dry_run_plans_sweeps_packing_arrays_and_gpu_hours(tmp_path, capsys):
    grid = grid_file(tmp_path, f"- name: dql\n  algo: dql\n  overrides: {{{SMALL}}}\n  sweep: {{eta: [0, 1, 2.5]}}\n",
                     steps=100)
    profile = profile_file(tmp_path, "partition: gpu\narray_limit: 2\nruns_per_job: 2\ngpu_hours_per_step: 1.0e-3\n")
    runs = tmp_path / "runs"
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs, "--dry-run")
    assert code == 0, out
    assert "6 runs (0 done, 0 running, 0 pending, 0 failed, 6 not submitted); to submit: 6" in out
    assert "jobs: 3 in 2 array(s) (array_limit=2, runs_per_job=2, executor=slurm)" in out
    assert "estimated: 0.60 GPU-hours for 600 training steps" in out
    assert out.count("dql[eta=2.5] toy:four_corners seed=") == 2
    assert not runs.exists()  # a dry run writes nothing

    # The checkpoints must be frequent enough for the time limit (a requeue loses the steps since the last one).
    slow = profile_file(tmp_path, "partition: gpu\ntime_min: 10\ngpu_hours_per_step: 0.01\n")
    code, out = grid_cli(capsys, "submit", grid, "--profile", slow, "--runs-dir", runs, "--dry-run")
    assert code == 2 and "checkpoint_every=50 steps is about 30 min" in out


def test_sbatch_script_of_a_dependent_array(tmp_path, monkeypatch):
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # srun need not exist here
    profile = load_profile(profile_file(tmp_path, """\
        partition: gpu
        account: lab
        gpus: 1
        cpus: 6
        mem_gb: 1.5
        time_min: 90
        setup: [source /shared/venv/bin/activate]
        sbatch: {mail-type: FAIL, exclusive: true}
        """))
    executor = get_executor("slurm").make(profile, tmp_path / "logs" / "%j", "offdiff-g-train",
                                          after=["12_0", "12_1", "15_0"])
    script = executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in ("--partition=gpu", "--account=lab", "--gpus-per-node=1", "--cpus-per-task=6", "--mem=1536M",
                 "--time=90", "--signal=USR2@120", "--requeue", "--dependency=afterok:12:15",
                 "--kill-on-invalid-dep=yes", "--mail-type=FAIL", "--exclusive", "--job-name=offdiff-g-train"):
        assert f"#SBATCH {line}\n" in script, line
    assert "source /shared/venv/bin/activate" in script


def test_slurm_executor_without_slurm_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: -1))
    profile = load_profile(profile_file(tmp_path, "partition: gpu\n"))
    with pytest.raises(OffdiffError, match=r"profile.yaml: the slurm executor needs SLURM's commands .* on PATH"):
        get_executor("slurm").make(profile, tmp_path / "logs" / "%j", "offdiff-g-train", after=[])


def test_shipped_grid_and_profiles_load(capsys, tmp_path):
    example = REPO / "slurm/profiles/example.yaml"
    assert load_profile(example).partition == "gpu"
    documented = set(load_yaml(example, "profile"))
    assert documented == {f.name for f in dataclasses.fields(Profile)} - {"path"}  # every key, with its comment
    assert load_profile(REPO / "slurm/profiles/local.yaml").executor == "local"
    quickstart = REPO / "benchmarks/grids/quickstart.yaml"
    code, out = grid_cli(capsys, "submit", quickstart, "--profile", REPO / "slurm/profiles/example.yaml",
                         "--runs-dir", tmp_path / "runs", "--dry-run")
    assert code == 0 and "to submit: 18" in out and "GPU-hours" in out  # 3 algorithms × 3 bandits × 2 seeds
    local_suite = REPO / "benchmarks/grids/local-suite.yaml"  # its datasets are not collected in this store
    code, out = grid_cli(capsys, "submit", local_suite, "--profile", REPO / "slurm/profiles/local.yaml", "--dry-run")
    assert code == 2 and "'local/hopper/medium-v0' is not in the local Minari store" in out
    assert "bash benchmarks/collect_local_suite.sh" in out


class CachedDQL(DiffusionQL):
    """Diffusion-QL with a cacheable first stage that depends on `hidden` only (not on eta)."""

    @classmethod
    def stage_plan(cls, config: Any) -> list[Stage]:
        pretrain = Stage("pretrain", 60, config.batch_size, evaluate=False, cacheable=True, config_keys=("hidden",))
        return [pretrain, *super().stage_plan(config)]


@pytest.fixture
def cached_dql(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register CachedDQL as `cached_dql` for this test (the debug executor runs jobs in this process)."""
    real = offdiff.registry.entry_points
    extra = EntryPoint("cached_dql", f"{__name__}:CachedDQL", offdiff.registry.GROUP)
    monkeypatch.setattr(offdiff.registry, "entry_points",
                        lambda group: [*real(group=group), *([extra] if group == offdiff.registry.GROUP else [])])


def test_cache_phase_trains_shared_stages_once(tmp_path, capsys, cached_dql):
    grid = grid_file(tmp_path, f"- {{algo: cached_dql, overrides: {{{SMALL}}}, sweep: {{eta: [0.0, 2.5]}}}}\n",
                     seeds="[0]", steps=60)
    runs, profile = tmp_path / "runs", profile_file(tmp_path, "executor: debug\ncpus: 1\nruns_per_job: 1\n")
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs, "--dry-run")
    assert "cache-phase array: 1 job(s), 1 run(s)" in out and "train-phase array: 2 job(s), 2 run(s), after" in out
    assert "estimated: 180 training steps" in out  # 60 pretrain steps once + 2 × 60 main steps

    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)
    assert code == 0 and "2 done" in out, out
    [submission] = Record(harness_dir(runs.resolve(), "g")).submissions
    cache_job, *train_jobs = submission.jobs
    assert cache_job.phase == "cache" and len(cache_job.runs) == 1
    assert [j.phase for j in train_jobs] == ["train", "train"] and all(j.after == [cache_job.id] for j in train_jobs)
    cells = expand(load_grid(grid), runs.resolve())
    reused = {c.key: any(r.get("event") == "reused_cached_stage" for r in read_jsonl(c.planned.run_dir.metrics))
              for c in cells}
    assert reused == {c.key: c.key not in cache_job.runs for c in cells}  # only the other run reused it
    assert len(list((runs / "_cache" / "cached_dql" / "pretrain").glob("*.pt"))) == 1
    # One key function: the runner stored the artifact under the key the harness grouped the runs by.
    keys = {c.planned.cache_key(c.planned.stages[0]) for c in cells}
    assert [p.stem for p in (runs / "_cache" / "cached_dql" / "pretrain").glob("*.pt")] == list(keys)


def test_a_grid_resolves_each_dataset_and_algorithm_once(tmp_path, monkeypatch):
    """Planning resolves a dataset and loads a plugin once per grid entry, not once per run (nor again to read the
    stages: no network is built)."""
    import offdiff.data.sources
    import offdiff.harness.grid

    calls: list[str] = []
    for module, name in ((offdiff.data.sources, "resolve"), (offdiff.harness.grid, "get_algorithm")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, name=name: calls.append(name) or real(*a))
    monkeypatch.setattr(DiffusionQL, "__init__", lambda *a: pytest.fail("planning built a network"))
    grid = grid_file(tmp_path, "- dql\n- {name: small, algo: dql, sweep: {eta: [0.5, 1.5]}}\n",
                     datasets="[toy:four_corners, toy:gaussians8]", seeds="[0, 1, 2]")
    profile = profile_file(tmp_path, "executor: local\n")
    assert main(["grid", "submit", str(grid), "--profile", str(profile), "--runs-dir", str(tmp_path / "runs"),
                 "--dry-run"]) == 0
    assert sorted(calls) == ["get_algorithm"] * 2 + ["resolve"] * 2  # 18 runs


def test_grid_compile_reaches_every_run(tmp_path):
    path = grid_file(tmp_path, ONE_ENTRY)
    assert all(c.planned.request.compile is None for c in expand(load_grid(path), tmp_path / "runs")), "auto"
    path.write_text(path.read_text() + "compile: true\n")
    cells = expand(load_grid(path), tmp_path / "runs")
    assert len(cells) == 2 and all(c.planned.request.compile for c in cells)


@pytest.mark.parametrize(("body", "message"), [
    ("name: g\ndatasets: [toy:four_corners]\nseedz: [0]\nalgorithms: [dql]\n",
     r"grid.yaml:3: unknown key 'seedz' in a grid spec \(did you mean 'seeds'\?\)"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms:\n  - name: x\n    algo: dqll\n",
     r"grid.yaml:6: unknown algorithm 'dqll'; registered: .*dql"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms:\n  - algo: dql\n    overides: {eta: 1}\n",
     r"grid.yaml:6: unknown key 'overides' in an algorithm entry \(did you mean 'overrides'\?\)"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms:\n  - algo: dql\n    overrides:\n"
     "      eta: 1\n      hiden: 3\n", r"grid.yaml:8: .*unknown config key\(s\) \['hiden'\]"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms:\n  - algo: dql\n    sweep:\n"
     "      hidden: [32, big]\n", r"grid.yaml:7: hidden expects an integer, got 'big'"),
    ("name: g\ndatasets:\n  - toy:four_corners\n  - minari:mujoco/hopper/medium-v0\nseeds: [0]\nalgorithms: [dql]\n",
     r"grid.yaml:4: dataset 'mujoco/hopper/medium-v0' is not in the local Minari store .* offdiff data fetch"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nprotocol: {eval_evry: 10}\nalgorithms: [dql]\n",
     r"grid.yaml:4: unknown key 'eval_evry' in protocol \(did you mean 'eval_every'\?\)"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nprotocol: {steps: 2000, eval_every: 10}\nalgorithms: [dql]\n",
     r"grid.yaml:4: the step budget is no longer a protocol key: write `budget: \{steps: 2000\}` at the grid's top"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nbudget: {steps: 0}\nalgorithms: [dql]\n",
     r"grid.yaml:4: steps is a positive integer, got 0"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nbudget: {step: 10}\nalgorithms: [dql]\n",
     r"grid.yaml:4: unknown key 'step' in budget \(did you mean 'steps'\?\)"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0, 0]\nalgorithms: [dql]\n",
     r"grid.yaml:3: seed 0 is negative or repeated"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms: [dql, dql]\n",
     r"grid.yaml:4: two algorithm entries are named 'dql'"),
    ("name: g\ndatasets: [toy:four_corners\nseeds: [0]\n", r"grid.yaml:3: not valid YAML"),
    ("name: ../g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms: [dql]\n",
     r"grid.yaml:1: name '../g' must be a plain folder name"),
    ("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms: [dql]\ncompile: fast\n",
     r"grid.yaml:5: compile is true, false or auto, got 'fast'"),
    ("name: g\ndatasets:\n  - {source: toy:four_corners, ref_scores: [1]}\nseeds: [0]\nalgorithms: [dql]\n",
     r"grid.yaml:3: ref_scores is \[MIN, MAX\] \(two numbers\) or d4rl"),
    ("name: g\ndatasets:\n  - {source: toy:four_corners, ref_scores: [5, 1]}\nseeds: [0]\nalgorithms: [dql]\n",
     r"grid.yaml:3: --ref-scores '5,1': need finite MIN < MAX"),
    ("name: g\ndatasets:\n  - {source: toy:four_corners, taks: x}\nseeds: [0]\nalgorithms: [dql]\n",
     r"grid.yaml:3: unknown key 'taks' in a dataset \(did you mean 'task'\?\)"),
])
def test_bad_grid_is_a_one_line_error_at_its_line(tmp_path, body, message):
    path = tmp_path / "grid.yaml"
    path.write_text(body)
    with pytest.raises(OffdiffError, match=message) as err:
        load_grid(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("body", "message"), [
    ("gpus: 1\n", r"profile.yaml: the slurm executor needs `partition:`"),
    ("partion: gpu\n", r"profile.yaml:1: unknown key 'partion' .*\(did you mean 'partition'\?\)"),
    ("partition: gpu\ncpus: many\n", r"profile.yaml:2: cpus expects an integer, got 'many'"),
    ("partition: gpu\nruns_per_job: 0\n", r"profile.yaml:2: runs_per_job must be at least 1"),
    ("partition: gpu\nsetup: source venv/bin/activate\n", r"profile.yaml:2: setup is a list of shell lines"),
    ("executor: slurmm\n", r"profile.yaml:1: executor='slurmm' is not one of \['slurm', 'local', 'debug'\]"),
])
def test_bad_profile_is_a_one_line_error(tmp_path, body, message):
    with pytest.raises(OffdiffError, match=message):
        load_profile(profile_file(tmp_path, body))


def test_cli_prints_one_line_for_bad_input(tmp_path, capsys):
    grid = grid_file(tmp_path, "- {algo: dql, overrides: {etaa: 1}}\n")
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile_file(tmp_path, LOCAL), "--runs-dir", tmp_path)
    assert code == 2 and out.startswith("offdiff: error: ") and out.count("\n") == 1 and "etaa" in out


def same_checkpoint(a: RunDir, b: RunDir) -> None:
    sa, sb = (torch.load(r.checkpoint, weights_only=False)["algorithm"]["modules"] for r in (a, b))
    assert sa.keys() == sb.keys()
    for module in sa:
        for name, tensor in sa[module].items():
            assert torch.equal(tensor, sb[module][name]), f"{module}.{name}"


@pytest.mark.slow
def test_run_left_half_written_by_a_killed_job_resumes_exactly(tmp_path, capsys):
    grid, runs = grid_file(tmp_path, ONE_ENTRY, seeds="[0]", steps=300), tmp_path / "runs"
    [cell] = cells_of(grid, runs).values()
    run = cell.planned.run_dir
    # A job killed mid-run: SIGKILL after its first checkpoint, then a torn log line and a stray temp file.
    code = (f"import torch; torch.set_num_threads(1)\nfrom pathlib import Path\n"
            f"from offdiff.harness.grid import expand, load_grid\nfrom offdiff.train.runner import train\n"
            f"[c] = expand(load_grid(Path({str(grid)!r})), Path({str(runs.resolve())!r}))\n"
            f"train(c.planned.request, progress=False)\n")
    killed = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not run.checkpoint.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert run.checkpoint.exists() and not run.is_done(), killed.stderr.read()
    with open(run.metrics, "a") as f:
        f.write('{"stage": "main", "stage_index": 0, "st')
    (run.path / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")

    profile = profile_file(tmp_path, "executor: debug\ncpus: 1\n")
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)
    assert code == 0 and "1 done" in out, out
    assert [r["step"] for r in read_jsonl(run.metrics)] == list(range(50, 301, 50))

    reference = cells_of(grid, tmp_path / "reference")[0]
    train(reference.planned.request, progress=False)  # one torch thread, as in the job (conftest; cpus: 1)
    same_checkpoint(run, reference.planned.run_dir)
    assert read_jsonl(run.evals)[-1]["returns"] == read_jsonl(reference.planned.run_dir.evals)[-1]["returns"]


def test_corrupt_checkpoint_is_reported_and_left_in_place(tmp_path, capsys):
    grid, runs = grid_file(tmp_path, ONE_ENTRY, seeds="[0]"), tmp_path / "runs"
    run = cells_of(grid, runs)[0].planned.run_dir
    run.path.mkdir(parents=True)
    run.checkpoint.write_bytes(b"PK\x03\x04 not really a checkpoint")
    profile = profile_file(tmp_path, "executor: debug\ncpus: 1\n")
    code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)
    assert code == 1 and "0 done, 0 running, 0 pending, 1 failed" in out
    assert run.checkpoint.read_bytes() == b"PK\x03\x04 not really a checkpoint" and not run.is_done()
    code, out = grid_cli(capsys, "status", grid, "--runs-dir", runs)
    assert "failed: dql toy:four_corners seed=0" in out
    assert f"OffdiffError: checkpoint {run.checkpoint} is corrupt or truncated" in out
    code, out = grid_cli(capsys, "resubmit", grid, "--profile", profile, "--runs-dir", runs, "--dry-run")
    assert "to submit: 1 (failed)" in out


@pytest.mark.slow
def test_second_job_on_a_run_in_use_is_refused_then_resubmitted(tmp_path, capsys):
    grid, runs = grid_file(tmp_path, ONE_ENTRY), tmp_path / "runs"
    cells = cells_of(grid, runs)
    busy = cells[1].planned.run_dir
    holder = RunDir(busy.path)  # e.g. a job still running it, or `offdiff train` by hand
    holder.lock()
    try:
        profile = profile_file(tmp_path, "executor: debug\ncpus: 1\n")
        code, out = grid_cli(capsys, "submit", grid, "--profile", profile, "--runs-dir", runs)
        assert code == 1 and "1 done, 0 running, 0 pending, 1 failed" in out
        assert sorted(p.name for p in busy.path.iterdir()) == [".lock"]  # nothing written by the refused job
        code, out = grid_cli(capsys, "status", grid, "--runs-dir", runs)
        assert f"refused to start it: RunInUse: run {busy.path} is in use by another process" in out
    finally:
        holder.unlock()
    done_stamp = cells[0].planned.run_dir.done_marker.stat().st_mtime_ns
    code, out = grid_cli(capsys, "resubmit", grid, "--profile", profile, "--runs-dir", runs)
    assert code == 0 and "to submit: 1 (failed)" in out and "2 done" in out
    latest = Record(harness_dir(runs.resolve(), "g")).submissions[-1]
    assert [k for j in latest.jobs for k in j.runs] == [cells[1].key]  # only the failed run
    assert cells[0].planned.run_dir.done_marker.stat().st_mtime_ns == done_stamp


def test_grid_dataset_task_and_ref_scores_reach_every_run(tmp_path):
    """`task:` picks the preset and `ref_scores:` the normalization of every cell on that dataset."""
    from conftest import write_d4rl_file

    data = write_d4rl_file(tmp_path / "mine.hdf5")
    path = tmp_path / "grid.yaml"
    path.write_text(f"name: g\ndatasets:\n  - {{source: 'hdf5:{data}', eval_env: Hopper-v4, task: walker2d-medium,"
                    " ref_scores: [0, 100]}\nseeds: [0]\nalgorithms: [dql]\n")
    [cell] = expand(load_grid(path), tmp_path / "runs")
    assert cell.planned.choice.preset == "walker2d-medium" and cell.planned.config.grad_norm == 1.0
    assert (cell.planned.ref.min, cell.planned.ref.max) == (0.0, 100.0)
    path.write_text(f"name: g\ndatasets: ['hdf5:{data}']\nseeds: [0]\nalgorithms: [dql]\n")
    with pytest.raises(OffdiffError, match=r"grid.yaml:2: .*needs an evaluation env"):
        load_grid(path)
