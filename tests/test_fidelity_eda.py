"""The same-draws check for EDA against a small FAKE release written the release's way.

CI has no official code. The fake has EDA's module layout and interface (`utils.get_args`, `model.ScoreNet_IDQL`,
`BDiffusion.BDiffusion_Behavior` / `IQL_policy` / `EDA_policy`, `dataset.D4RL_dataset`), draws from torch's
global RNG in the release's order (its loader shuffles with one randperm per epoch, the support actions are
sampled in chunks of 256 states in the loader's order, the Fourier weights are drawn when a network is built)
and says "cuda" where the release does, so the test also runs the adapter's CPU redirect. Its sampler is
offdiff's DPM-Solver (the real run checks the release's own).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from fidelity import evaluate_again, head, run, same_draws  # noqa: E402
from fidelity.release import imported, open_checkout  # noqa: E402

from offdiff.analysis.report import aggregate  # noqa: E402
from offdiff.analysis.scores import read_scores  # noqa: E402
from offdiff.data.pipeline import prepare  # noqa: E402
from offdiff.eval.load import load_run  # noqa: E402
from offdiff.runtime import derive_seed  # noqa: E402

FAKE_UTILS = '''
import argparse
import torch


def marginal_prob_std(t, device="cuda", beta_1=20.0, beta_0=0.1):
    log_mean = -0.25 * t ** 2 * (beta_1 - beta_0) - 0.5 * t * beta_0
    return torch.exp(log_mean), torch.sqrt(1. - torch.exp(2. * log_mean))


def get_args():
    p = argparse.ArgumentParser()
    for name, value in {"env": "hopper-medium-v2", "seed": 0, "device": "cuda", "beta": 1.0, "alpha": 3.0, "M": 16,
                        "policy_batchsize": 256, "actor_blocks": 3, "q_layer": 2, "dropout_rate": 0.1,
                        "data_ratio": 1.0}.items():
        p.add_argument(f"--{name}", type=type(value), default=value)
    return p.parse_known_args()[0]
'''

FAKE_MODEL = '''
import numpy as np
import torch
import torch.nn as nn

from offdiff.diffusion import ContinuousVPSchedule
from offdiff.diffusion.dpm_solver import dpm_solver_sample


class GaussianFourierProjection(nn.Module):
    def __init__(self, embed_dim, scale=30.):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embed_dim // 2) * scale, requires_grad=False)

    def forward(self, x):
        x_proj = x[..., None] * self.W[None, :] * 2 * np.pi
        return torch.cat([torch.sin(x_proj), torch.cos(x_proj)], dim=-1)


def mlp(dims, activation=nn.ReLU):
    layers = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1]), activation()]
    return nn.Sequential(*layers, nn.Linear(dims[-2], dims[-1]))


class TwinQ(nn.Module):
    def __init__(self, action_dim, state_dim, layers=2):
        super().__init__()
        self.q1 = mlp([state_dim + action_dim] + [256] * layers + [1])
        self.q2 = mlp([state_dim + action_dim] + [256] * layers + [1])

    def both(self, action, condition):
        x = torch.cat([action, condition], -1)
        return self.q1(x), self.q2(x)

    def forward(self, action, condition):
        return torch.min(*self.both(action, condition))


class ValueFunction(nn.Module):
    def __init__(self, state_dim):
        super().__init__()
        self.v = mlp([state_dim, 256, 256, 1])

    def forward(self, state):
        return self.v(state)


class MLPResNetBlock(nn.Module):
    def __init__(self, features, act):
        super().__init__()
        self.act, self.layer_norm = act, nn.LayerNorm(features)
        self.fc1, self.fc2 = nn.Linear(features, features * 4), nn.Linear(features * 4, features)
        self.residual = nn.Linear(features, features)  # built, never used

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.layer_norm(x))))


class MLPResNet(nn.Module):
    def __init__(self, num_blocks, out_dim, act):
        super().__init__()
        self.act, self.fc = act, nn.Linear(256, 256)
        self.blocks = nn.ModuleList([MLPResNetBlock(256, act) for _ in range(num_blocks)])
        self.out_fc = nn.Linear(256, out_dim)

    def forward(self, x):
        x = self.fc(x)
        for block in self.blocks:
            x = block(x)
        return self.out_fc(self.act(x))


class DPM_Solver:
    """The release's DPM-Solver++ (data prediction, singlestep, time-uniform) as offdiff computes it."""

    def __init__(self, model_fn):
        self.model_fn, self.schedule = model_fn, ContinuousVPSchedule()

    def sample(self, x, steps, order):
        def x0(x_t, t):
            alpha, sigma = float(self.schedule.alpha(t)), float(self.schedule.sigma(t))
            return (x_t - sigma * self.model_fn(x_t, x_t.new_full(x_t.shape[:1], t))) / alpha
        return dpm_solver_sample(x0, x, self.schedule, 1.0, 1e-3, steps, order)


class ScoreNet_IDQL(nn.Module):
    def __init__(self, input_dim, output_dim, marginal_prob_std, embed_dim=32, args=None):
        super().__init__()
        self.output_dim, self.device, self.marginal_prob_std = output_dim, args.device, marginal_prob_std
        self.embed = nn.Sequential(GaussianFourierProjection(embed_dim=32))
        self.main = MLPResNet(args.actor_blocks, output_dim, nn.SiLU())
        self.cond_model = mlp([32, 32])
        self.act = nn.SiLU()
        self.dense1 = nn.Linear(32, 32)
        self.dense2 = nn.Linear(output_dim, 128)
        self.dense3 = nn.Linear(input_dim - output_dim, 256 - 128 - 32)
        self.dpm_solver = DPM_Solver(self.forward_dmp_wrapper_fn)  # a bound method: deepcopy rebinds it

    def forward_dmp_wrapper_fn(self, x, t):
        return self(x, t, self.condition)

    def get_energy(self, x, t, condition):
        embed = self.act(self.cond_model(self.embed(t)))
        return self.main(torch.cat([self.dense2(x), self.dense1(embed), self.dense3(condition)], -1)).sum(-1)

    def forward(self, x, t, condition):
        with torch.enable_grad():
            x.requires_grad_(True)
            grad = torch.autograd.grad(self.get_energy(x, t, condition).sum(), x, create_graph=True)[0]
            return -grad * self.marginal_prob_std(t)[1][..., None]

    def sample(self, states, sample_per_state=16, diffusion_steps=15):
        self.eval()
        with torch.no_grad():
            self.condition = torch.repeat_interleave(torch.FloatTensor(states).to(self.device), sample_per_state, 0)
            x = torch.randn(self.condition.shape[0], self.output_dim, device=self.device)
            actions = self.dpm_solver.sample(x, steps=diffusion_steps, order=2).cpu().numpy()
        self.train()
        return actions.reshape(len(states), sample_per_state, self.output_dim)
'''

FAKE_BDIFFUSION = '''
import copy
import os

import torch
import torch.nn as nn

from model import *

BUG = os.environ.get("FAKE_EDA_BUG", "")  # a planted difference: "align" doubles β, "critic" takes expectile 0.9


class BDiffusion_Behavior(nn.Module):
    def __init__(self, input_dim, output_dim, marginal_prob_std, args=None):
        super().__init__()
        self.diffusion_behavior = ScoreNet_IDQL(input_dim, output_dim, marginal_prob_std, args=args).to(args.device)
        self.diffusion_optimizer = torch.optim.Adam(self.diffusion_behavior.parameters(), lr=3e-4)
        self.marginal_prob_std = marginal_prob_std

    def update_behavior(self, data):
        a, s = data["a"], data["s"]
        self.diffusion_behavior.train()
        t = torch.rand(a.shape[0], device=a.device) * (1. - 1e-3) + 1e-3
        z = torch.randn_like(a)
        alpha_t, std = self.marginal_prob_std(t)
        eps = self.diffusion_behavior(a * alpha_t[:, None] + z * std[:, None], t, s)
        self.loss = torch.mean(torch.sum((eps - z) ** 2, dim=(1,)))
        self.diffusion_optimizer.zero_grad()
        self.loss.backward()
        self.diffusion_optimizer.step()


def update_target(new, target, tau):
    for param, target_param in zip(new.parameters(), target.parameters()):
        target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)


class IQL_Critic(nn.Module):
    def __init__(self, adim, sdim, args):
        super().__init__()
        self.q0 = TwinQ(adim, sdim, layers=args.q_layer).to(args.device)
        self.q0_target = copy.deepcopy(self.q0).to(args.device)
        self.vf = ValueFunction(sdim).to("cuda")
        self.q_optimizer = torch.optim.Adam(self.q0.parameters(), lr=3e-4)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=3e-4)

    def update_q0(self, data):
        s, a, r, s_, d = data["s"], data["a"], data["r"], data["s_"], data["d"]
        with torch.no_grad():
            target_q = self.q0_target(a, s)
            next_v = self.vf(s_)
        u = target_q - self.vf(s)
        expectile = 0.9 if BUG == "critic" else 0.7
        v_loss = torch.mean(torch.abs(expectile - (u < 0).float()) * u ** 2)
        self.v_optimizer.zero_grad()
        v_loss.backward()
        self.v_optimizer.step()
        targets = r + (1. - d) * 0.99 * next_v
        qs = self.q0.both(a, s)
        q_loss = sum(torch.nn.functional.mse_loss(q, targets) for q in qs) / len(qs)
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()
        self.v_loss, self.q_loss, self.q = v_loss, q_loss, target_q.mean()
        update_target(self.q0, self.q0_target, 0.005)


class IQL_policy(nn.Module):
    def __init__(self, input_dim, output_dim, args=None):
        super().__init__()
        self.q = [IQL_Critic(output_dim, input_dim - output_dim, args)]

    def update_iql(self, data):
        self.q[0].update_q0(data)


class EDA_policy(nn.Module):
    def __init__(self, input_dim, output_dim, marginal_prob_std, actor_load_path, args=None):
        super().__init__()
        self.diffusion_behavior = ScoreNet_IDQL(input_dim, output_dim, marginal_prob_std, args=args).to(args.device)
        ckpt = torch.load(actor_load_path, map_location=args.device)
        self.load_state_dict({k: v for k, v in ckpt.items() if "diffusion_behavior" in k})
        self.diffusion_policy = copy.deepcopy(self.diffusion_behavior).to(args.device)
        self.diffusion_optimizer = torch.optim.Adam(self.diffusion_policy.parameters(), lr=5e-5)
        self.marginal_prob_std, self.args, self.output_dim = marginal_prob_std, args, output_dim
        self.q = [IQL_Critic(output_dim, input_dim - output_dim, args)]

    def update_policy(self, data):
        s, fake_a = data["s"], data["fake_a"]
        concat_s = s.unsqueeze(1).expand(-1, fake_a.shape[1], -1)
        energy = self.q[0].q0_target(fake_a, concat_s).detach().squeeze(-1)
        t = (torch.rand((fake_a.shape[0],)) * (1. - 1e-3) + 1e-3).unsqueeze(1).expand(-1, fake_a.shape[1])
        z = torch.randn_like(fake_a)
        alpha_t, std = self.marginal_prob_std(t)
        x = fake_a * alpha_t[..., None] + z * std[..., None]
        with torch.no_grad():
            baseline = self.diffusion_behavior.get_energy(x, t, concat_s)
        beta = self.args.beta * (2 if BUG == "align" else 1)
        logits = beta * (self.diffusion_policy.get_energy(x, t, concat_s) - baseline)
        loss = -torch.mean(torch.sum(torch.softmax(energy * self.args.alpha, 1) * torch.log_softmax(logits, 1), -1))
        self.diffusion_optimizer.zero_grad()
        loss.backward()
        self.diffusion_optimizer.step()
        return loss.item()

    def select_actions_sfbc(self, states, diffusion_steps=15, sample_per_state=16, base="behavior"):
        self.eval()
        with torch.no_grad():
            net = self.diffusion_policy if base == "policy" else self.diffusion_behavior
            net.condition = torch.repeat_interleave(states, sample_per_state, dim=0)
            x = torch.randn(states.shape[0] * sample_per_state, self.output_dim)
            actions = net.dpm_solver.sample(x, steps=diffusion_steps, order=2).reshape(states.shape[0],
                                                                                       sample_per_state, -1)
            q = self.q[0].q0_target(actions, states.unsqueeze(1).expand(-1, sample_per_state, -1))[..., 0]
            best = torch.argmax(q, dim=1)
        self.train()
        return actions[torch.arange(states.shape[0]), best].cpu().numpy()
'''

FAKE_DATASET = '''
import d4rl
import gym
import torch


class D4RL_dataset(torch.utils.data.Dataset):
    def __init__(self, args):
        data = d4rl.qlearning_dataset(gym.make(args.env))
        self.device = args.device
        self.states = torch.from_numpy(data["observations"]).float().to(self.device)
        self.actions = torch.from_numpy(data["actions"]).float().to(self.device)
        self.next_states = torch.from_numpy(data["next_observations"]).float().to(self.device)
        self.is_finished = torch.from_numpy(data["terminals"]).reshape(-1, 1).float().to(self.device)
        reward = torch.from_numpy(data["rewards"]).reshape(-1, 1).float().to(self.device)
        returns, ret = [], 0.0
        for r, d in zip(data["rewards"], data["terminals"]):
            ret += float(r)
            if d:
                returns, ret = returns + [ret], 0.0
        self.rewards = reward / (max(returns) - min(returns)) * 1000
        self.len, self.current_idx = self.states.shape[0], 0

    def _shuffle_data(self):
        indices = torch.randperm(self.len).to("cuda")
        self.states, self.next_states = self.states[indices], self.next_states[indices]
        self.actions, self.rewards = self.actions[indices], self.rewards[indices]
        self.is_finished = self.is_finished[indices]
        if hasattr(self, "fake_actions"):
            self.fake_actions = self.fake_actions[indices]

    def sample(self, batch_size):
        if self.current_idx + batch_size > self.len:
            self.current_idx = 0
        if self.current_idx == 0:
            self._shuffle_data()
        rows = slice(self.current_idx, self.current_idx + batch_size)
        self.current_idx += batch_size
        fake_a = self.fake_actions[rows] if hasattr(self, "fake_actions") else None
        return {"s": self.states[rows], "a": self.actions[rows], "r": self.rewards[rows], "s_": self.next_states[rows],
                "d": self.is_finished[rows], "fake_a": fake_a}
'''


@pytest.fixture
def fake_eda_release(tmp_path: Path) -> Path:
    """An EDA written the release's way (module layout, global RNG, draw order, "cuda" literals)."""
    root = tmp_path / "fake_eda"
    root.mkdir()
    for name, text in {"utils.py": FAKE_UTILS, "model.py": FAKE_MODEL, "BDiffusion.py": FAKE_BDIFFUSION,
                       "dataset.py": FAKE_DATASET}.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def hopper_like(tmp_path: Path) -> str:
    """40 Hopper-shaped transitions in 4 episodes (a D4RL-style file): small enough to label every state."""
    rng = np.random.default_rng(0)
    n, path = 40, tmp_path / "hopper-like.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"], f["next_observations"] = rng.normal(size=(2, n, 11)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
        f["rewards"] = rng.uniform(0, 3, size=n).astype(np.float32)
        f["terminals"], f["timeouts"] = np.arange(n) % 10 == 9, np.zeros(n, bool)
        f.attrs.update({"task": "hopper-medium", "ref_min_score": 0.0, "ref_max_score": 100.0})
    return f"hdf5:{path}"


def _argv(checkout: Path, source: str, *extra: str) -> list[str]:
    return ["--release", "eda", "--checkout", str(checkout), "--any-commit", "--dataset", source,
            "--eval-env", "Hopper-v5", "--set", "num_blocks=1", "--set", "behavior_batch_size=8", "--set",
            "critic_batch_size=8", "--set", "align_batch_size=4", "--set", "eval_candidates=2", "--states", "2",
            *extra]


def test_same_draws_finds_the_fake_eda_equal_and_a_planted_alignment_difference(fake_eda_release, hopper_like,
                                                                                 tmp_path, monkeypatch, capsys):
    out = tmp_path / "same.md"
    argv = _argv(fake_eda_release, hopper_like, "--set", "dropout=0", "--compare", "3")
    assert same_draws.main([*argv, "--out", str(out)]) == 0
    assert "9 steps, 2 states: the same up to float rounding" in capsys.readouterr().out
    report = out.read_text()
    columns = ("behavior | critic | critic_target | policy | support_actions_rel | align_loss | bdm_loss | critic_loss"
               " | q_loss | value_loss")
    assert f"| after | {columns} |" in report
    policy = {line.split("|")[1].strip(): line.split("|")[5].strip() for line in report.splitlines()
              if line.startswith("| ") and "step" in line}
    assert policy["critic step 3"] == "—" and float(policy["align step 1"]) < 1e-4  # the policy joins at align
    assert ", policy " in report.split("for scale:")[1]

    # The fake's alignment logits use 2β. Adam's first step is blind to a gradient's scale, and at θ = φ the
    # logits are 0 whatever β is: the planted β shows in the loss of the second step, which a wrong β moves.
    monkeypatch.setenv("FAKE_EDA_BUG", "align")
    assert same_draws.main([*argv, "--out", str(out)]) == 1
    assert "they differ: after align step 2, align_loss differs by" in capsys.readouterr().out
    assert "first part beyond the tolerance: after align step" in out.read_text()
    monkeypatch.setenv("FAKE_EDA_BUG", "critic")  # the fake's value loss takes expectile 0.9 for 0.7
    assert same_draws.main(argv) == 1
    assert "they differ: after critic step 1, critic differs by" in capsys.readouterr().out


def test_same_draws_eda_refuses_what_cannot_be_served_in_one_line(fake_eda_release, hopper_like, tmp_path, capsys):
    out = tmp_path / "same.md"
    assert same_draws.main([*_argv(fake_eda_release, hopper_like), "--out", str(out)]) == 2  # dropout 0.1
    err = capsys.readouterr().err
    assert err == ("offdiff: error: same draws: dropout=0.1 draws its masks inside torch's C++ kernel, which cannot "
                   "be served to the release; run the check with --set dropout=0\n")
    assert same_draws.main([*_argv(fake_eda_release, hopper_like, "--set", "dropout=0", "--set",
                                   "label_fraction=0.5")]) == 2
    err = capsys.readouterr().err
    assert "cannot follow this eda config: label_fraction=0.5 (the release has 1.0)" in err
    assert len(err.strip().splitlines()) == 1
    assert same_draws.main([*_argv(fake_eda_release, hopper_like, "--set", "dropout=0", "--set",
                                   "behavior_batch_size=41")]) == 2
    assert capsys.readouterr().err == ("offdiff: error: same draws: a batch of 41 rows is more than the 40 the "
                                       "release's loader has\n")
    assert not out.exists()


def test_both_sides_evaluate_their_behavior_model_after_its_stage_on_the_same_episodes(fake_eda_release, hopper_like,
                                                                                      tmp_path, capsys):
    """The issue's EDA budget is one where the release beats its own behaviour model: the official run evaluates
    the release's behaviour model (one sample per state, no Q) after `behavior`, as offdiff's EDA does its own."""
    runs = tmp_path / "runs"
    argv = ["--release", "eda", "--checkout", str(fake_eda_release), "--any-commit", "--dataset", hopper_like,
            "--eval-env", "Hopper-v5", "--seed", "1", "--set", "num_blocks=1", "--set", "behavior_batch_size=8",
            "--set", "critic_batch_size=8", "--set", "align_batch_size=4", "--set", "eval_candidates=2",
            "--set", "behavior_steps=3", "--set", "critic_steps=3", "--set", "align_steps=3", "--eval-every", "3",
            "--eval-episodes", "2", "--runs-dir", str(runs), "--quiet", "--also-offdiff"]
    assert run.main(argv) == 0, capsys.readouterr().err
    sides = {side: next((runs / "fidelity" / side).glob("*/*/seed_1")) for side in ("eda", "eda-official")}
    rows = {side: [json.loads(line) for line in (path / "diagnostics.jsonl").read_text().splitlines()]
            for side, path in sides.items()}
    behavior = {side: [r for r in found if r["kind"] == "policy"] for side, found in rows.items()}
    for side, found in behavior.items():
        assert [(r["stage"], r["step"], r["policy"]) for r in found] == [("behavior", 3, "behavior")], side
    assert behavior["eda"][0]["seeds"] == behavior["eda-official"][0]["seeds"]
    assert len(behavior["eda-official"][0]["returns"]) == 2
    # The release side has no Q calibration or stage report: those need the plugin's own networks.
    assert {r["kind"] for r in rows["eda-official"]} == {"policy"}
    assert "q_calibration" in {r["kind"] for r in rows["eda"]}

    aggregate(tmp_path / "agg", [runs / "fidelity"], reps=20)
    table = (tmp_path / "agg" / "diagnostics.md").read_text().splitlines()
    [official_row] = [line for line in table if line.startswith("| hopper-medium | eda-official | 1 |")]
    score = f"{behavior['eda-official'][0]['normalized_mean']:.1f} ± 0.0"
    assert f"| behavior | {score} |" in official_row

    # Scored again on new episodes: the twin rebuilt from the checkout has no policy (the release builds EDA_policy
    # when its alignment starts), so it cannot act as the final policy, and says so; its behaviour model it can,
    # given the run's saved weights, on the same episodes as offdiff's.
    out = tmp_path / "again.csv"
    again = [str(runs / "fidelity"), "--release", "eda", "--checkout", str(fake_eda_release), "--any-commit",
             "--episodes", "2", "--out", str(out)]
    capsys.readouterr()
    assert evaluate_again.main(again) == 2
    err = capsys.readouterr().err
    assert "has no policy to give the run's saved weights to" in err and "--policy (behavior)" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert evaluate_again.main([*again, "--policy", "critic"]) == 2
    assert "--policy critic: eda has no diagnostic policy of that name (it has: behavior)" in capsys.readouterr().err
    assert evaluate_again.main([*again, "--policy", "behavior"]) == 0
    frame = read_scores(out)
    assert sorted(frame.algorithm) == ["eda", "eda-official"] and set(frame.episodes) == {2}
    seed = {}
    with imported(open_checkout(fake_eda_release, "2f96929", any_commit=True)):
        twin = evaluate_again.load_official(sides["eda-official"], "eda", "cpu")
        result = twin.evaluate(2, seed=derive_seed(twin.manifest.eval_seed, evaluate_again.PURPOSE), policy="behavior")
        seed["eda-official"] = result.seeds
    assert frame[frame.algorithm == "eda-official"].normalized.item() == pytest.approx(result.normalized.mean())
    ours = load_run(sides["eda"], "cpu")
    seed["eda"] = ours.evaluate(2, seed=derive_seed(ours.manifest.eval_seed, evaluate_again.PURPOSE),
                                policy="behavior").seeds
    assert seed["eda"] == seed["eda-official"]


def test_head_writes_the_first_whole_episodes_with_the_sources_task(tmp_path, capsys):
    out = tmp_path / "head.hdf5"
    assert head.main(["toy:four_corners", "--episodes", "3", "--out", str(out)]) == 0  # one-step episodes
    assert "[head] 3 transitions (3 episodes)" in capsys.readouterr().out
    whole = prepare("toy:four_corners").buffer
    with h5py.File(out) as f:
        assert np.array_equal(f["rewards"][:], whole.rewards[:3].numpy()) and f["terminals"][:].all()
        assert f.attrs["task"] == "toy-four_corners"
    written = out.read_bytes()
    assert head.main(["toy:four_corners", "--episodes", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("offdiff: error: --episodes 0: toy:four_corners has ")
    assert out.read_bytes() == written and [p.name for p in tmp_path.iterdir()] == ["head.hdf5"]  # no temp left
