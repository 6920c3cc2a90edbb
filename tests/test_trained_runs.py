"""Using trained runs: `offdiff.load_run`, `offdiff eval` (score and video) and `--keep final`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import offdiff
from offdiff.algorithm import EnvSpec
from offdiff.cli import main
from offdiff.io import read_jsonl
from offdiff.registry import get_algorithm

TOY = ["--dataset", "toy:four_corners", "--steps", "30", "--eval-episodes", "20", "--eval-envs", "5",
       "--device", "cpu", "--quiet", "--set", "hidden=32", "--set", "eval_candidates=8", "--set", "batch_size=64"]


def _train(capsys, tmp_path, *extra: str) -> tuple:
    code = main(["train", "--algo", "dql", "--runs-dir", str(tmp_path / "runs"), *TOY, *extra])
    out = capsys.readouterr()
    assert code == 0, out.err
    (run,) = (tmp_path / "runs").glob("train/dql/*/*/seed_0")
    return run, out.out


def test_eval_repeats_the_last_evaluation_from_checkpoint_and_from_final_weights(tmp_path, capsys):
    run, _ = _train(capsys, tmp_path)
    last = read_jsonl(run / "evals.jsonl")[-1]
    size_all = (run / "checkpoint.pt").stat().st_size

    assert main(["eval", str(run), "--json", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "final weights" in out
    result = json.loads(out.splitlines()[1])
    assert result["returns"] == pytest.approx(last["returns"]) and result["seeds"] == last["seeds"]
    assert result["normalized_mean"] == pytest.approx(last["normalized_mean"])

    # --keep final on the finished run: checkpoint.pt becomes the smaller weights.pt, evaluation unchanged.
    _train(capsys, tmp_path, "--keep", "final")
    assert not (run / "checkpoint.pt").exists()
    assert (run / "weights.pt").stat().st_size < size_all / 2
    assert main(["eval", str(run), "--json", "--device", "cpu"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[1])
    assert again["returns"] == pytest.approx(last["returns"])

    # Other episodes: other seeds, the number asked for.
    assert main(["eval", str(run), "--episodes", "7", "--seed", "3", "--device", "cpu"]) == 0
    assert "normalized score (7 episodes)" in capsys.readouterr().out


def test_load_run_acts_in_env_units(tmp_path, capsys):
    run, _ = _train(capsys, tmp_path, "--keep", "final")
    trained = offdiff.load_run(run, device="cpu")
    assert trained.finished and trained.manifest.algorithm == "dql"
    env = trained.make_env()
    obs, _ = env.reset(seed=0)
    actions = trained.act(np.stack([obs, obs]))
    assert actions.shape == (2, 2) and env.action_space.contains(actions[0].astype(np.float32))
    assert trained.evaluate(episodes=4, seed=0).normalized.shape == (4,)


def test_eval_video_of_a_mujoco_run(tmp_path, capsys, tiny_hopper_minari, monkeypatch):
    iio = pytest.importorskip("imageio.v3")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    code = main(["train", "--algo", "dql", "--dataset", tiny_hopper_minari, "--runs-dir", str(tmp_path / "runs"),
                 "--steps", "20", "--eval-episodes", "2", "--eval-envs", "2", "--device", "cpu", "--quiet",
                 "--set", "hidden=32", "--set", "eval_candidates=4", "--keep", "final", "--task", "none",
                 "--ref-scores", "0,1000"])
    assert code == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs").glob("**/seed_0")
    video = tmp_path / "hopper.gif"
    assert main(["eval", str(run), "--episodes", "1", "--video", str(video), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    frames = int(out.split("video: ")[1].split("(")[1].split()[0])
    assert "MUJOCO_GL=egl" in err
    assert iio.imread(video, index=None).shape[1:] == (480, 480, 3)
    assert frames > 2


@pytest.mark.parametrize(("argv", "message"), [
    (["eval", "{tmp}"], "is not a run folder (no manifest.json)"),
    (["eval", "{run}", "--video", "{tmp}/x.avi"], "give a .gif or .mp4 file"),
    (["eval", "{run}", "--video", "{tmp}/x.gif"], "cannot render frames"),
    (["eval", "{run}", "--policy", "behavior"], "--policy behavior: dql has no diagnostic policy of that name (it "
                                                "has: none)"),
    (["eval", "{run}", "--policy", "behavior", "--video", "{tmp}/x.gif"], "--video renders the final policy"),
])
def test_eval_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    run, _ = _train(capsys, tmp_path)
    code = main([a.format(tmp=tmp_path, run=run) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_grid_keep_final(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("name: g\ndatasets: [toy:four_corners]\nseeds: [0]\nalgorithms: [dql]\n"
                    "budget: {steps: 20}\nprotocol: {eval_every: 20, eval_episodes: 5, eval_envs: 5}\nkeep: final\n")
    profile = tmp_path / "profile.yaml"
    profile.write_text("executor: debug\ncpus: 1\n")
    code = main(["grid", "submit", str(grid), "--profile", str(profile), "--runs-dir", str(tmp_path / "runs")])
    assert code == 0, capsys.readouterr()
    (run,) = (tmp_path / "runs/g").glob("dql/*/*/seed_0")
    assert (run / "DONE").exists() and (run / "weights.pt").exists() and not (run / "checkpoint.pt").exists()
    grid.write_text(grid.read_text().replace("keep: final", "keep: some"))
    assert main(["grid", "submit", str(grid), "--profile", str(profile)]) == 2
    assert "keep is all or final" in capsys.readouterr().err


def test_eval_of_an_unfinished_run_says_so(tmp_path, capsys):
    from offdiff.train.runner import TrainRequest, plan, train

    request = TrainRequest(algo="dtql", source="toy:four_corners", steps=10, device="cpu", runs_root=tmp_path,
                           overrides={"diffusion_hidden": 16, "policy_hidden": 16, "critic_hidden": 16,
                                      "batch_size": 16, "eval_candidates": 4}, log=())
    train(request, progress=False, stop_after_cacheable=True)  # pretraining done, checkpointed, no DONE
    run = plan(request).run_dir.path
    assert main(["eval", str(run), "--eval-episodes", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "NOT FINISHED: weights of the last checkpoint, pretrain step 10" in out
    assert "normalized score (3 episodes)" in out

    # The stage's diagnostic policy (DTQL: its diffusion model acting alone), on the same episodes as the final one.
    assert main(["eval", str(run), "--eval-episodes", "3", "--device", "cpu", "--json", "--policy", "diffusion"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.endswith("; policy: diffusion")
    assert main(["eval", str(run), "--eval-episodes", "3", "--device", "cpu", "--json"]) == 0
    assert json.loads(line)["seeds"] == json.loads(capsys.readouterr().out.splitlines()[1])["seeds"]
    assert len(json.loads(line)["returns"]) == 3


# The checkpoint's parameter names (two levels) as runs made before the diffusion processes split wrote them:
# a rename here makes every older run folder unloadable.
CHECKPOINT_NAMES = {
    "dql": {"actor": ["net.0", "net.2", "net.4", "net.6", "time_embedding.1", "time_embedding.3"],
            "ema_actor": ["net.0", "net.2", "net.4", "net.6", "time_embedding.1", "time_embedding.3"],
            "critic": ["online.net", "target.net"]},
    "dtql": {"diffusion": ["net.net", "net.time_embedding"], "critic": ["q.online", "q.target", "v.net"],
             "actor": ["net.0", "net.2", "net.4", "net.6"]},
    "eda": {"behavior": ["net.action", "net.state", "net.time", "net.trunk"],
            "critic": ["q.online", "q.target", "v.net"],
            "policy": ["net.action", "net.state", "net.time", "net.trunk"]},
}


@pytest.mark.parametrize("name", sorted(CHECKPOINT_NAMES))
def test_checkpoint_parameter_names_are_those_older_runs_have(name):
    cls = get_algorithm(name)
    spec = EnvSpec(obs_dim=3, act_dim=2, dataset_id="test/x-v0", task="test")
    algo = cls(cls.Config(), spec, torch.device("cpu"), torch.Generator().manual_seed(0))
    names = {key: sorted({".".join(k.split(".")[:2]) for k in module.state_dict()})
             for key, module in algo.modules().items()}
    assert names == CHECKPOINT_NAMES[name]
