"""The fidelity harness (benchmarks/fidelity/) end to end against a tiny FAKE release, shaped like DTQL's.

CI has no official code: the fake below has the release's module layout and the interface the DTQL adapter
drives (`agents.dtql.DTQL`, `utils.data_sampler.Data_Sampler`), imports `gym` and `d4rl` as the releases do,
and logs what it was given. The checks: both sides saw the same data, budget, hyperparameters and evaluation
seeds, and `offdiff aggregate` reads the pair.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from fidelity import curves, decide, evaluate_again, run, same_draws  # noqa: E402
from fidelity.adapters.eda import _fix_applied  # noqa: E402
from fidelity.lanes import LaneRun, parse_seeds, run_lanes, summary  # noqa: E402
from fidelity.release import imported, open_checkout  # noqa: E402

from offdiff.analysis.report import aggregate  # noqa: E402
from offdiff.analysis.scores import read_scores  # noqa: E402
from offdiff.data.pipeline import prepare  # noqa: E402
from offdiff.errors import OffdiffError  # noqa: E402
from offdiff.eval.load import load_run  # noqa: E402
from offdiff.records import RunDir  # noqa: E402
from offdiff.runtime import derive_seed  # noqa: E402

SOURCE = "toy:four_corners"

FAKE_DTQL = '''
import json, os
import gym  # the releases import these; the harness stubs them (neither is installed here)
import d4rl
import numpy as np
import torch

def log(**row):
    with open(os.environ["FAKE_RELEASE_LOG"], "a") as f:
        f.write(json.dumps(row) + "\\n")

class DTQL:
    def __init__(self, device, state_dim, action_dim, action_space, discount, alpha, lr, lr_decay, lr_maxt,
                 sigma_max, sigma_min, sigma_data, expectile, tau, gamma, repeats):
        log(event="init", alpha=alpha, lr=lr, lr_decay=lr_decay, lr_maxt=lr_maxt, expectile=expectile, gamma=gamma,
            repeats=repeats, max_action=float(action_space.high[0]), state_dim=state_dim, action_dim=action_dim)
        self.bc_actor = torch.nn.Linear(state_dim, action_dim)
        self.critic = torch.nn.Linear(state_dim + action_dim, 1)
        self.critic_target = torch.nn.Linear(state_dim + action_dim, 1)
        self.distill_actor = torch.nn.Linear(state_dim, action_dim)
        self.opt = torch.optim.Adam(self.bc_actor.parameters(), lr=lr)

    def _bc(self, replay_buffer, batch_size):
        state, action, next_state, reward, not_done = replay_buffer.sample(batch_size)
        loss = ((self.bc_actor(state) - action) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def pretrain(self, replay_buffer, batch_size=256, pretrain_steps=50000):
        for _ in range(pretrain_steps):
            self.bc_loss = self._bc(replay_buffer, batch_size)
            log(event="pretrain", batch_size=batch_size)

    def train(self, replay_buffer, batch_size=256):
        loss = self._bc(replay_buffer, batch_size).item()
        log(event="train", batch_size=batch_size)
        return {"bc_loss": [loss], "ql_loss": [-2.0], "distill_loss": [0.5], "actor_loss": [1.0],
                "critic_loss": [3.0], "gamma_loss": [0.0]}

    def sample_action(self, state):
        with torch.no_grad():
            out = torch.tanh(self.distill_actor(torch.as_tensor(state, dtype=torch.float32)))
        return (out + 0.1 * torch.randn_like(out)).clamp(-1, 1).numpy()
'''

FAKE_MAIN = '''
import gym  # never run: the harness reads the table below without executing the script
offline_hyperparameters = {
    "toy-four_corners-v0": {"lr": 3e-4, "alpha": 1.0, "gamma": 0.0, "lr_decay": False, "num_epochs": 7,
                            "batch_size": 256, "expectile": 0.7},
    "other-task-v2": {"lr": 1.0},
}
'''

FAKE_SAMPLER = '''
import os
import numpy as np
import torch

class Data_Sampler:
    def __init__(self, data, device, reward_tune="no"):
        np.savez(os.environ["FAKE_RELEASE_DATA"], reward_tune=reward_tune, **data)
        self.state = torch.from_numpy(data["observations"]).float()
        self.action = torch.from_numpy(data["actions"]).float()
        self.next_state = torch.from_numpy(data["next_observations"]).float()
        self.reward = torch.from_numpy(data["rewards"]).view(-1, 1).float()
        self.not_done = 1.0 - torch.from_numpy(data["terminals"]).view(-1, 1).float()

    def sample(self, batch_size):
        ind = torch.randint(0, len(self.state), size=(batch_size,))
        return self.state[ind], self.action[ind], self.next_state[ind], self.reward[ind], self.not_done[ind]
'''


@pytest.fixture
def fake_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "fake_dtql"
    for name, text in {"agents/__init__.py": "", "agents/dtql.py": FAKE_DTQL, "utils/__init__.py": "",
                       "utils/data_sampler.py": FAKE_SAMPLER, "main.py": FAKE_MAIN}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    monkeypatch.setenv("FAKE_RELEASE_LOG", str(tmp_path / "release.jsonl"))
    monkeypatch.setenv("FAKE_RELEASE_DATA", str(tmp_path / "release_data.npz"))
    return root


def _argv(checkout: Path, runs: Path, *extra: str) -> list[str]:
    return ["--release", "dtql", "--checkout", str(checkout), "--dataset", SOURCE, "--seed", "3", "--steps", "6",
            "--eval-every", "3", "--eval-episodes", "3", "--eval-envs", "2", "--log-every", "2",
            "--runs-dir", str(runs), "--quiet", *extra]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_official_twin_sees_the_same_data_budget_and_eval_seeds(fake_release, tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = run.main(_argv(fake_release, runs, "--any-commit", "--set", "alpha=2.5", "--set", "reward_transform=normalize",
                          "--also-offdiff"))
    assert rc == 0
    [official] = list((runs / "fidelity" / "dtql-official").glob("*/*/seed_3"))
    [mine] = list((runs / "fidelity" / "dtql").glob("*/*/seed_3"))
    assert official.relative_to(runs / "fidelity" / "dtql-official") == mine.relative_to(runs / "fidelity" / "dtql")
    assert (official / "DONE").exists() and (mine / "DONE").exists()

    # The same evaluations: stages, steps, env reset seeds, episodes.
    evals = {side: _rows(path / "evals.jsonl") for side, path in (("official", official), ("mine", mine))}
    assert [(r["stage"], r["step"], r["seeds"]) for r in evals["official"]] == \
        [(r["stage"], r["step"], r["seeds"]) for r in evals["mine"]]
    assert [r["step"] for r in evals["official"]] == [3, 6] and len(evals["official"][0]["seeds"]) == 3

    # The same run description: config (the --set reached both), stages and budget, protocol, data, seeds.
    manifests = {side: json.loads((path / "manifest.json").read_text()) for side, path in
                 (("official", official), ("mine", mine))}
    for key in ("config", "seed", "eval_seed", "protocol", "task", "dataset", "transforms"):
        assert manifests["official"][key] == manifests["mine"][key], key
    strip = [{k: s[k] for k in ("name", "steps", "batch_size", "evaluate")} for s in manifests["mine"]["stages"]]
    assert [{k: s[k] for k in ("name", "steps", "batch_size", "evaluate")} for s in
            manifests["official"]["stages"]] == strip
    assert manifests["official"]["algorithm"] == "dtql-official"
    assert manifests["official"]["release"]["path"] == str(fake_release.resolve())
    assert manifests["official"]["release"]["commit"] is None  # not a git checkout (allowed by --any-commit)
    # The release's own table for the task, against offdiff's preset (no preset for this toy: the defaults).
    assert manifests["official"]["release"]["preset_check"] == {
        "table": "main.py:offline_hyperparameters", "entries": ["toy-four_corners-v0"],
        "differences": {"toy-four_corners-v0:num_epochs": {"field": "steps", "offdiff": 1_000_000, "release": 7000}}}

    # The release got the budget and the hyperparameters of the offdiff config.
    config = manifests["mine"]["config"]
    log = _rows(tmp_path / "release.jsonl")
    [init] = [r for r in log if r["event"] == "init"]
    assert init["alpha"] == 2.5 == config["alpha"] and init["lr"] == config["lr"]
    assert init["lr_maxt"] == config["steps"] == 6 and init["repeats"] == config["eval_candidates"]
    assert init["max_action"] == 1.0
    assert [r["event"] for r in log[1:]] == ["pretrain"] * 6 + ["train"] * 6
    assert {r["batch_size"] for r in log[1:]} == {config["batch_size"]}

    # The release got the offdiff source's transitions (actions in offdiff's [-1, 1]) with raw rewards, and
    # processes them itself (reward_tune), while the offdiff run's buffer holds its own transform's rewards.
    fed = np.load(tmp_path / "release_data.npz")
    buffer = prepare(SOURCE).buffer
    assert manifests["mine"]["transforms"]["reward"]["name"] == "normalize"
    assert str(fed["reward_tune"]) == "normalize"
    np.testing.assert_array_equal(fed["observations"], buffer.obs.numpy())
    np.testing.assert_array_equal(fed["actions"], buffer.actions.numpy())
    np.testing.assert_array_equal(fed["rewards"], buffer.rewards.numpy())
    np.testing.assert_array_equal(fed["terminals"], 1.0 - buffer.not_done.numpy())

    # Training curves, under offdiff's names where the quantity is the same.
    metrics = _rows(official / "metrics.jsonl")
    assert [(r["stage"], r["step"]) for r in metrics] == [("pretrain", s) for s in (2, 4, 6)] + \
        [("main", s) for s in (2, 4, 6)]
    assert metrics[-1]["q_policy"] == 2.0 and metrics[-1]["tr_loss"] == 0.5 and "bc_loss" in metrics[-1]
    assert "nll" not in metrics[-1]  # gamma_nll = 0: the release does not compute it

    # Nothing of the release stays importable after the run.
    assert not {"gym", "d4rl", "agents", "utils", "agents.dtql"} & set(sys.modules)

    # offdiff aggregate compares the two sides.
    out = tmp_path / "agg"
    aggregate(out, [runs / "fidelity"], reps=20)
    lines = (out / "scores.csv").read_text().splitlines()
    header = lines[0].split(",")
    algos = {row.split(",")[header.index("algorithm")] for row in lines[1:]}
    assert algos == {"dtql", "dtql-official"}

    # A finished twin is skipped; an unfinished one does not resume (the release's counters are not saved).
    assert run.main(_argv(fake_release, runs, "--any-commit", "--set", "alpha=2.5", "--set",
                          "reward_transform=normalize")) == 0
    assert len(_rows(tmp_path / "release.jsonl")) == len(log)  # the release did not run again
    done = (official / "DONE").read_bytes()
    (official / "DONE").unlink()
    assert run.main(_argv(fake_release, runs, "--any-commit", "--set", "alpha=2.5", "--set",
                          "reward_transform=normalize")) == 2
    assert "does not resume from a checkpoint" in capsys.readouterr().err
    # The curves leave an unfinished run out (a partial curve would count as a seed), and say so.
    assert curves.main([str(runs / "fidelity"), "--out", str(out / "curves")]) == 2
    captured = capsys.readouterr()
    assert f"left out {official}: not finished (no DONE)" in captured.out
    assert "no offdiff run with its official twin" in captured.err and not (out / "curves").exists()
    (official / "DONE").write_bytes(done)

    # ... and the training curves of both sides, side by side.
    assert curves.main([str(runs / "fidelity"), "--out", str(out / "curves")]) == 0
    assert {p.name for p in (out / "curves").iterdir()} == {f"training_curves_dtql_toy-four_corners.{x}"
                                                            for x in ("png", "pdf", "md")}
    table = (out / "curves" / "training_curves_dtql_toy-four_corners.md").read_text()
    assert "| bc_loss | 6 |" in table and "| q_policy | 3 |" in table  # bc over both stages, q_policy main only


def test_evaluate_again_reloads_both_sides_and_plays_the_same_episodes(fake_release, tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in ("3", "4"):
        argv = _argv(fake_release, runs, "--any-commit", "--also-offdiff")
        argv[argv.index("--seed") + 1] = seed
        assert run.main(argv) == 0
    [official, *_] = sorted((runs / "fidelity" / "dtql-official").glob("*/*/seed_3"))
    [mine] = list((runs / "fidelity" / "dtql").glob("*/*/seed_3"))

    # The release's twin is rebuilt from the checkout and given its saved weights: with the run's own episodes,
    # seeds and acting generator it repeats its last evaluation to the return (an untrained twin would not).
    with imported(open_checkout(fake_release, "9a29cea", any_commit=True)):
        twin = evaluate_again.load_official(official, "dtql", "cpu")
        assert twin.evaluate().returns.tolist() == _rows(official / "evals.jsonl")[-1]["returns"]
        again = twin.evaluate(5, seed=derive_seed(twin.manifest.eval_seed, evaluate_again.PURPOSE))
    ours = load_run(mine, "cpu")
    assert ours.evaluate().returns.tolist() == _rows(mine / "evals.jsonl")[-1]["returns"]
    assert ours.evaluate(5, seed=derive_seed(ours.manifest.eval_seed, evaluate_again.PURPOSE)).seeds == again.seeds

    # The CSV: one row per run, scored on the new episodes, which decide.py reads as it reads aggregate's.
    out = tmp_path / "again.csv"
    assert evaluate_again.main([str(runs / "fidelity"), "--release", "dtql", "--checkout", str(fake_release),
                                "--any-commit", "--episodes", "5", "--out", str(out)]) == 0
    frame = read_scores(out)
    assert sorted(zip(frame.algorithm, frame.seed, strict=True)) == [("dtql", 3), ("dtql", 4), ("dtql-official", 3),
                                                                     ("dtql-official", 4)]
    assert set(frame.episodes) == {5} and frame.done.all() and frame.is_last.all()
    [row] = frame[(frame.algorithm == "dtql-official") & (frame.seed == 3)].itertuples()
    assert row.normalized == pytest.approx(float(again.normalized.mean()))
    [pair] = decide.pairs(frame, last=1, reps=50)
    assert len(pair.ours) == len(pair.theirs) == 2
    assert "dtql-official toy-four_corners seed 3" in capsys.readouterr().out.replace("/", "-")

    # Bad input: one line, nothing written.
    bad = tmp_path / "bad.csv"
    assert evaluate_again.main([str(runs / "fidelity"), "--release", "dql", "--checkout", str(fake_release),
                                "--any-commit", "--out", str(bad)]) == 2
    assert "no finished runs of both dql and dql-official" in capsys.readouterr().err and not bad.exists()
    assert evaluate_again.main([str(runs / "fidelity"), "--release", "dtql", "--checkout", str(fake_release),
                                "--episodes", "5", "--out", str(bad)]) == 2
    assert "pinned to commit 9a29cea" in capsys.readouterr().err and not bad.exists()


def test_seeds_train_both_sides_in_parallel_lanes_and_skip_what_is_done(fake_release, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = [*_argv(fake_release, runs, "--any-commit", "--set", "alpha=2.5")]
    argv[argv.index("--seed"):argv.index("--seed") + 2] = ["--seeds", "0-1"]
    assert run.main([*argv, "--side", "both", "--parallel", "2"]) == 0
    out = capsys.readouterr().out
    done = {(side, p.name) for side in ("dtql", "dtql-official")
            for p in (runs / "fidelity" / side).glob("*/*/seed_*") if (p / "DONE").exists()}
    assert done == {(side, f"seed_{s}") for side in ("dtql", "dtql-official") for s in (0, 1)}
    assert out.count(" | done | ") == 4 and out.count("started ") == 4
    logs = sorted(p.name for p in (runs / "fidelity" / "_logs").iterdir())
    assert logs == [f"{side}_toy-four_corners_seed{s}.log" for side in ("dtql-official", "dtql") for s in (0, 1)]
    # Each run is the pair's single-seed run: the --set reached every one of them, on both sides.
    configs = {json.loads(p.read_text())["config"]["alpha"] for p in (runs / "fidelity").glob("*/*/*/*/manifest.json")}
    assert configs == {2.5}
    releases = [r for r in _rows(tmp_path / "release.jsonl") if r["event"] == "init"]
    assert len(releases) == 2  # the release trained the two official runs, once each

    # Again: everything is DONE, nothing is trained; `offdiff aggregate` reads the four runs beside the logs.
    assert run.main([*argv, "--side", "both", "--parallel", "2"]) == 0
    assert capsys.readouterr().out.count(" | skipped | ") == 4
    assert len([r for r in _rows(tmp_path / "release.jsonl") if r["event"] == "init"]) == 2
    aggregate(tmp_path / "agg", [runs / "fidelity"], reps=20)
    scores = read_scores(tmp_path / "agg" / "scores.csv")
    assert set(zip(scores["algorithm"], scores["seed"], strict=True)) == \
        {(a, s) for a in ("dtql", "dtql-official") for s in (0, 1)}

    # An unfinished official run cannot resume: one line before anything starts.
    [official] = (runs / "fidelity" / "dtql-official").glob("*/*/seed_1")
    (official / "DONE").unlink()
    assert run.main([*argv, "--seeds", "0-2", "--side", "both"]) == 2
    err = capsys.readouterr().err
    assert "1 unfinished official run(s) cannot resume" in err and str(official) in err
    assert len(err.strip().splitlines()) == 1 and not list((runs / "fidelity" / "dtql").glob("*/*/seed_2"))


def test_a_failed_run_does_not_stop_the_others_and_says_why(tmp_path, capsys):
    def lane(seed: int, code: str) -> LaneRun:
        command = (sys.executable, "-c", f"print('loading'); print('offdiff: error: planted {seed}'); {code}")
        return LaneRun("dtql", seed, RunDir(tmp_path / f"seed_{seed}"), command, tmp_path / f"{seed}.log", False)

    outcomes = run_lanes([lane(0, "raise SystemExit(2)"), lane(1, "pass"), lane(2, "raise SystemExit(3)")], 2, 1)
    assert [(o.run.seed, o.state) for o in outcomes] == [(0, "failed"), (1, "failed"), (2, "failed")]
    assert outcomes[0].error.startswith("exit status 2: ") and "offdiff: error: planted 0" in outcomes[0].error
    assert outcomes[1].error.startswith("ended without DONE: ")
    assert f"(log: {tmp_path / '2.log'})" in outcomes[2].error
    assert "| dtql seed 2 | failed |" in summary(outcomes)


def test_a_sweep_command_line_is_its_runs_command_lines(capsys):
    parser = run.build_parser()
    args = parser.parse_args(["--release", "dtql", "--checkout", "/c", "--dataset", "toy:four_corners", "--seeds",
                              "0-3,7", "--also-offdiff", "--parallel", "2", "--threads", "3", "--set", "alpha=2",
                              "--set", "lr_decay=false", "--steps", "9", "--eval-every", "3", "--any-commit"])
    child = parser.parse_args(run.child_argv(parser, args, seed=7, side="offdiff"))
    assert {k: v for k, v in vars(child).items() if vars(args)[k] != v} == \
        {"seeds": None, "seed": 7, "side": "offdiff", "also_offdiff": False, "parallel": 1, "threads": 1}
    assert parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    assert run.main(["--release", "dtql", "--checkout", "/c", "--dataset", "toy:four_corners", "--parallel", "2"]) == 2
    assert "--parallel and --threads are for --seeds" in capsys.readouterr().err  # not silently ignored
    for bad in ("3-1", "a", "1-", ""):
        with pytest.raises(OffdiffError, match="--seeds"):
            parse_seeds(bad)


def test_bad_input_is_one_line_and_writes_nothing(fake_release, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run.main(_argv(fake_release, runs)) == 2  # not the pinned commit (not a git checkout at all)
    assert "pinned to commit 9a29cea" in capsys.readouterr().err
    assert run.main(_argv(fake_release, runs, "--any-commit", "--set", "critic_lr=0.001")) == 2
    err = capsys.readouterr().err
    assert err.startswith("offdiff: error: the dtql release cannot follow") and "critic_lr=0.001" in err
    assert len(err.strip().splitlines()) == 1
    argv = _argv(fake_release, runs, "--any-commit", "--task", "hopper-medium", "--device", "cpu")
    assert run.main(["--release", "eda", *argv[2:]]) == 2  # runs on the CPU, but the DTQL fake is no EDA
    err = capsys.readouterr().err
    assert "not the eda release, or its requirements are missing (No module named 'BDiffusion')" in err
    assert len(err.strip().splitlines()) == 1
    assert not runs.exists()


def test_eda_fix_is_detected():
    released = """
        def update_policy(self):
            with torch.no_grad():
                baseline = f(x)
                xt_model_energy = g(x) - baseline
            return xt_model_energy
    """
    fixed = """
        def update_policy(self):
            with torch.no_grad():
                baseline = f(x)
            xt_model_energy = g(x) - baseline
            return xt_model_energy
    """
    assert not _fix_applied(textwrap.indent(textwrap.dedent(released), "    "))
    assert _fix_applied(textwrap.indent(textwrap.dedent(fixed), "    "))


FAKE_DQL = '''
import copy, os
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EMA_DELAY = int(os.environ.get("FAKE_DQL_EMA_DELAY", "0"))  # a planted difference: the EMA starts this much later

class TimeEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half) * -(np.log(10000.0) / (half - 1)))
        args = t.float()[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], dim=-1)

class MLP(nn.Module):
    def __init__(self, state_dim, action_dim, t_dim=16):
        super().__init__()
        self.time_mlp = nn.Sequential(TimeEmbedding(t_dim), nn.Linear(t_dim, 2 * t_dim), nn.Mish(),
                                      nn.Linear(2 * t_dim, t_dim))
        self.mid_layer = nn.Sequential(nn.Linear(state_dim + action_dim + t_dim, 256), nn.Mish(), nn.Linear(256, 256),
                                       nn.Mish(), nn.Linear(256, 256), nn.Mish())
        self.final_layer = nn.Linear(256, action_dim)

    def forward(self, x, t, s):
        return self.final_layer(self.mid_layer(torch.cat([x, self.time_mlp(t), s], dim=1)))

class Diffusion(nn.Module):
    def __init__(self, state_dim, action_dim, n):
        super().__init__()
        self.model, self.action_dim, self.n = MLP(state_dim, action_dim), action_dim, n
        i = np.arange(1, n + 1)
        beta = 1 - np.exp(-0.1 / n - 0.5 * 9.9 * (2 * i - 1) / n ** 2)
        abar = np.cumprod(1 - beta)
        prev = np.append(1.0, abar[:-1])
        coef = dict(a=np.sqrt(abar), b=np.sqrt(1 - abar), r=np.sqrt(1 / abar), rm1=np.sqrt(1 / abar - 1),
                    c1=beta * np.sqrt(prev) / (1 - abar), c2=(1 - prev) * np.sqrt(1 - beta) / (1 - abar),
                    std=np.sqrt(beta * (1 - prev) / (1 - abar)))
        self.k = {name: torch.tensor(v, dtype=torch.float32) for name, v in coef.items()}

    def forward(self, state):
        k, x = self.k, torch.randn((state.shape[0], self.action_dim))
        for t in reversed(range(self.n)):
            eps = self.model(x, torch.full((state.shape[0],), t, dtype=torch.long), state)
            x0 = (k["r"][t] * x - k["rm1"][t] * eps).clamp(-1, 1)
            x = k["c1"][t] * x0 + k["c2"][t] * x + (t > 0) * k["std"][t] * torch.randn_like(x)
        return x.clamp(-1, 1)

    sample = forward

    def loss(self, x0, state):
        t = torch.randint(0, self.n, (x0.shape[0],)).long()
        noise = torch.randn_like(x0)
        xt = self.k["a"][t][:, None] * x0 + self.k["b"][t][:, None] * noise
        return F.mse_loss(self.model(xt, t, state), noise)

class Critic(nn.Module):
    def __init__(self, s, a):
        super().__init__()
        head = lambda: nn.Sequential(nn.Linear(s + a, 256), nn.Mish(), nn.Linear(256, 256), nn.Mish(),
                                     nn.Linear(256, 256), nn.Mish(), nn.Linear(256, 1))
        self.q1_model, self.q2_model = head(), head()

    def forward(self, s, a):
        x = torch.cat([s, a], dim=-1)
        return self.q1_model(x), self.q2_model(x)

def _step(optimizer, loss, module, grad_norm):
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(module.parameters(), grad_norm)
    optimizer.step()

class Diffusion_QL:
    def __init__(self, state_dim, action_dim, max_action, device, discount, tau, max_q_backup, eta, beta_schedule,
                 n_timesteps, lr, lr_decay, lr_maxt, grad_norm):
        self.actor = Diffusion(state_dim, action_dim, n_timesteps)
        self.ema_model = copy.deepcopy(self.actor)
        self.critic = Critic(state_dim, action_dim)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=3e-4)
        self.discount, self.tau, self.eta, self.grad_norm, self.lr_decay, self.step = discount, tau, eta, grad_norm, \\
            lr_decay, 0

    def train(self, replay_buffer, iterations, batch_size=100):
        s, a, s2, r, not_done = replay_buffer.sample(batch_size)
        with torch.no_grad():
            y = r + not_done * self.discount * torch.min(*self.critic_target(s2, self.ema_model(s2)))
        q1, q2 = self.critic(s, a)
        critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        _step(self.critic_optimizer, critic_loss, self.critic, self.grad_norm)
        bc_loss = self.actor.loss(a, s)
        q1, q2 = self.critic(s, self.actor(s))
        first = np.random.uniform() > 0.5
        q_loss = -q1.mean() / q2.abs().mean().detach() if first else -q2.mean() / q1.abs().mean().detach()
        actor_loss = bc_loss + self.eta * q_loss
        _step(self.actor_optimizer, actor_loss, self.actor, self.grad_norm)
        if self.step % 5 == 0 and self.step >= 1000 + EMA_DELAY:
            for ema, p in zip(self.ema_model.parameters(), self.actor.parameters()):
                ema.data.mul_(0.995).add_(0.005 * p.data)
        for target, p in zip(self.critic_target.parameters(), self.critic.parameters()):
            target.data.copy_(self.tau * p.data + (1 - self.tau) * target.data)
        self.step += 1
        return {"bc_loss": [bc_loss.item()], "ql_loss": [q_loss.item()], "actor_loss": [actor_loss.item()],
                "critic_loss": [critic_loss.item()]}

    def sample_action(self, state):
        s = torch.FloatTensor(state.reshape(1, -1)).repeat_interleave(50, dim=0)
        with torch.no_grad():
            a = self.actor.sample(s)
            q = torch.min(*self.critic_target(s, a)).flatten()
            return a[torch.multinomial(F.softmax(q, dim=0), 1)].numpy().flatten()
'''


@pytest.fixture
def fake_dql_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DQL written the release's way (its module layout, global RNG, draw order), not the release's code."""
    root = tmp_path / "fake_dql"
    for name, text in {"agents/__init__.py": "", "agents/ql_diffusion.py": FAKE_DQL, "utils/__init__.py": "",
                       "utils/data_sampler.py": FAKE_SAMPLER}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    monkeypatch.setenv("FAKE_RELEASE_DATA", str(tmp_path / "release_data.npz"))
    return root


def test_same_draws_finds_equal_steps_equal_and_a_planted_difference(fake_dql_release, tmp_path, monkeypatch,
                                                                      capsys):
    argv = ["--release", "dql", "--checkout", str(fake_dql_release), "--any-commit", "--dataset", SOURCE,
            "--steps", "2000", "--set", "batch_size=8", "--states", "3"]
    out = tmp_path / "same.md"
    assert same_draws.main([*argv, "--compare", "12", "--control", "1e-7", "--out", str(out)]) == 0
    assert "12 steps, 3 states: the same up to float rounding" in capsys.readouterr().out
    report = out.read_text()
    assert "**Verdict:** the same up to float rounding" in report and "| main step 12 |" in report
    columns = "actor | ema_actor | critic | critic_target | actor_loss | bc_loss | critic_loss | q_loss"
    assert f"| after | {columns} |" in report and "In brackets, the control" in report
    [row] = [line for line in report.splitlines() if line.startswith("| main step 12 |")]
    assert row.count("(") == 8  # each network and loss beside its control's difference

    # The fake's EMA now starts 5 steps after offdiff's (step 1005, not 1000): everything agrees for 1000 steps,
    # then the EMA networks part.
    monkeypatch.setenv("FAKE_DQL_EMA_DELAY", "5")
    assert same_draws.main([*argv, "--compare", "1001", "--out", str(out)]) == 1
    assert "they differ: after main step 1001, ema_actor differs" in capsys.readouterr().out
    # offdiff's EMA took its first step there; the fake's did not move
    assert "first part beyond the tolerance: after main step 1001, ema_actor" in out.read_text()
    assert "the release stepped it by +0.00e+00" in out.read_text()

    assert same_draws.main([*argv, "--compare", "0"]) == 2
    assert "--compare: at least one step" in capsys.readouterr().err
    assert same_draws.main([*argv, "--compare", "pretrain=3"]) == 2
    assert "--compare: no stage 'pretrain' (the stages: main)" in capsys.readouterr().err
    assert same_draws.main([*argv, "--set", "ema_start=5"]) == 2
    assert "cannot follow this dql config: ema_start=5" in capsys.readouterr().err


def test_same_draws_verdict_passes_rounding_amplified_like_the_control_and_nothing_more():
    steps = ["main step 1", "main step 2"]
    nets = [{"policy": 1e-6}, {"policy": 3e-3}]  # past the 1e-4 tolerance at step 2
    losses = [{"q": 1e-7}, {"q": 2e-4}]
    like = [{"policy": 1e-6, "q": 1e-7}, {"policy": 2e-3, "q": 1e-4}]
    amplified = same_draws.Comparison(steps, nets, losses, [1e-7], control=like, control_actions=[1e-7])
    passes, words = amplified.verdict(1e-4, within=10)
    assert passes and words.startswith("the same up to float rounding, amplified by training")
    assert "after main step 2, policy differs by 0.003" in words and "at least 1/2.0 as much" in words
    assert not same_draws.Comparison(steps, nets, losses, [1e-7]).verdict(1e-4, 10)[0]  # no control: differs
    slow = [{"policy": 1e-6, "q": 1e-7}, {"policy": 1e-6, "q": 1e-4}]
    passes, words = same_draws.Comparison(steps, nets, losses, [1e-7], control=slow).verdict(1e-4, 10)
    assert not passes and "up to 3e+03x the control's difference" in words
    lossy = same_draws.Comparison(steps, nets, [{"q": 1e-7}, {"q": 1e-2}], [1e-7], control=like)
    assert not lossy.verdict(1e-4, 10)[0]  # a loss far past its control's
    acting = same_draws.Comparison(steps, [{"policy": 0.0}] * 2, losses[:1] * 2, [0.5], control=like,
                                   control_actions=[1e-6])
    passes, words = acting.verdict(1e-4, 10)
    assert not passes and "acting on state 1, the actions differ by 0.5" in words
    assert same_draws.Comparison(steps, [{"policy": 0.0}] * 2, losses[:1] * 2, [1e-7]).verdict(1e-4, 10) == (
        True, "the same up to float rounding")
    assert same_draws.stage_steps("pretrain=5,main=7", ["pretrain", "main"]) == {"pretrain": 5, "main": 7}
    assert same_draws.stage_steps("main=7", ["pretrain", "main"]) == {"pretrain": 0, "main": 7}
    assert same_draws.stage_steps("9", ["pretrain", "main"]) == {"pretrain": 9, "main": 9}
    with pytest.raises(same_draws.OffdiffError, match="--compare takes N or STAGE=N"):
        same_draws.stage_steps("main=x", ["main"])


def test_same_draws_says_which_releases_it_is_written_for_and_when_layouts_differ(fake_release, capsys, monkeypatch):
    argv = ["--release", "eda", "--checkout", str(fake_release), "--any-commit", "--dataset", SOURCE, "--steps", "6"]
    monkeypatch.setattr("fidelity.adapters.eda.EDAAdapter.same_draws", False)
    assert same_draws.main(argv) == 2
    err = capsys.readouterr().err
    assert err == "offdiff: error: the same-draws check is not written for the eda release (only for dql, dtql)\n"
    # The DTQL-shaped fake has one Linear where DTQL's score network has seven: one line, exit 2.
    assert same_draws.main(["--release", "dtql", *argv[2:]]) == 2
    err = capsys.readouterr().err
    assert err == "offdiff: error: same draws: diffusion: layers with parameters: 1 in the release, 7 in offdiff\n"


def test_bands_apart_counts_only_steps_where_every_seed_of_one_side_is_beyond_the_other():
    ours = {0: [1.0, 2.0], 10: [1.0, 2.0], 20: [5.0, 6.0], 30: [0.0]}
    theirs = {0: [1.5, 3.0], 10: [2.5, 3.0], 20: [3.0, 4.9]}
    assert curves.bands_apart(ours, theirs) == ([0, 10, 20], [10, 20])
    _, table = curves.overlap_table("dql", "d", {("dql", "d"): {"loss": ours, "only_ours": ours},
                                              ("dql-official", "d"): {"loss": theirs}})
    assert "| loss | 3 | 2 | 10, 20 |" in table and "only_ours" not in table
    # 2 + 2 seeds from one distribution: one side wholly above the other in 2 of the C(4,2) = 6 orders.
    assert "2 of 3 (metric, step) points apart" in table and "2/C(4,2) = 33.33%, about 1.00 of" in table
    # 11 + 11 seeds: 2/C(22,11) = 2.8e-6, shown with its significant digits, not as 0.00%.
    many = {0: [float(k) for k in range(11)]}
    _, table = curves.overlap_table("dql", "d", {("dql", "d"): {"loss": many}, ("dql-official", "d"): {"loss": many}})
    assert "2/C(22,11) = 0.00028%, about 2.8e-06 of" in table
