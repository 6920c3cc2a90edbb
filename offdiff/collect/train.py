"""Training the behaviour policies: one SAC run with evaluated snapshots, checkpointed and resumable.

The run takes `snapshots` policy snapshots at evenly spaced steps; the last, at the end of the budget,
is the expert. Checkpoints are written atomically at the first episode end after every
`checkpoint_every` steps (so no env state needs saving: the next episode starts from its own reset
seed), and a rerun continues from the last one to the same result as an uninterrupted run (on CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offdiff.collect.envs import EnvInfo
from offdiff.collect.episodes import Episodes
from offdiff.collect.replay import ReplayBuffer
from offdiff.collect.rollout import actor_policy, evaluate_returns, progress_bar
from offdiff.collect.sac import SAC, SACConfig, sample_with_log_prob
from offdiff.data.transforms import ActionScaler
from offdiff.errors import OffdiffError
from offdiff.io import atomic_torch_save, torch_load
from offdiff.nets import TanhGaussianPolicy
from offdiff.runtime import derive_seed

CHECKPOINT = "checkpoint.pt"


def snapshot_steps(budget: int, snapshots: int) -> list[int]:
    """Evenly spaced steps round(budget·k / snapshots), k = 1 … snapshots, without repeats; the last is `budget`."""
    return sorted({round(budget * k / snapshots) for k in range(1, snapshots + 1)} - {0})


def pick_medium(returns: Sequence[float], random_return: float) -> int:
    """The index of the medium snapshot among `returns` (mean evaluation returns; the last is the expert's).

    Target T = R_random + (R_expert − R_random) / 3, a third of the expert's score on the random-to-expert
    scale (D4RL: medium ≈ 1/3 of expert). Candidates are the snapshots before the expert, up to and
    including the first one whose return reaches T (all of them if none does); the medium snapshot is the
    candidate whose return is closest to T, the earlier one on a tie.
    """
    if len(returns) < 2:
        raise OffdiffError("a medium policy needs at least 2 snapshots; raise the budget or `snapshots`")
    target = random_return + (returns[-1] - random_return) / 3
    earlier = list(returns[:-1])
    reached = [i for i, r in enumerate(earlier) if r >= target]
    candidates = earlier[: reached[0] + 1] if reached else earlier
    return int(np.argmin([abs(r - target) for r in candidates]))


def check_budget(budget: int, config: SACConfig) -> None:
    """The budget must outlast the random warm-up and hold at least two snapshots (a medium and the expert)."""
    if budget <= config.learning_starts:
        raise OffdiffError(
            f"budget {budget} must exceed learning_starts={config.learning_starts} (the random warm-up); "
            "raise --budget or lower it with --set learning_starts=N"
        )
    if len(snapshot_steps(budget, config.snapshots)) < 2:
        raise OffdiffError(f"a medium policy needs at least 2 snapshots, got snapshots={config.snapshots}")


@dataclass
class BehaviourRun:
    """A finished SAC run: snapshots (step, actor weights, mean return) and its replay buffer."""

    env: EnvInfo
    config: SACConfig
    steps: list[int]
    actors: list[dict[str, torch.Tensor]]
    returns: list[float]
    random_return: float
    medium: int  # index into the snapshots
    replay: ReplayBuffer

    def actor(self, index: int, device: torch.device) -> TanhGaussianPolicy:
        hidden = (self.config.hidden,) * self.config.layers
        actor = TanhGaussianPolicy(self.env.obs_dim, self.env.act_dim, hidden).to(device)
        actor.load_state_dict(self.actors[index])
        return actor.eval()

    def replay_episodes(self, stop: int) -> Episodes:
        """The replay buffer's first `stop` steps as episodes, actions in env units, the open episode cut."""
        arrays = self.replay.arrays(stop)
        arrays["act"] = ActionScaler(self.env.action_low, self.env.action_high).to_env(arrays["act"])
        return Episodes.from_steps(**arrays)


class SACRun:
    """One resumable SAC run in `work_dir` (see the module docstring)."""

    def __init__(
        self, env: EnvInfo, config: SACConfig, budget: int, seed: int, device: torch.device, work_dir: Path,
        random_return: float, progress: bool = True, log: Callable[[str], None] = lambda _: None,
    ):
        check_budget(budget, config)
        self.env, self.config, self.budget, self.device = env, config, budget, device
        self.path, self.random_return = Path(work_dir) / CHECKPOINT, random_return
        self.progress, self.log = progress, log
        self.schedule = snapshot_steps(budget, config.snapshots)
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, the global RNG untouched
            torch.manual_seed(derive_seed(seed, "collect-sac-init"))
            self.sac = SAC(env.obs_dim, env.act_dim, config).to(device)
        self.replay = ReplayBuffer(budget, env.obs_dim, env.act_dim, device)
        self.generator = torch.Generator(device).manual_seed(derive_seed(seed, "collect-sac"))
        self.reset_seed = derive_seed(seed, "collect-sac-reset")
        self.eval_seed = derive_seed(seed, "collect-eval")
        self.step, self.episode = 0, 0
        self.actors: list[dict[str, torch.Tensor]] = []
        self.returns: list[float] = []

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step, "episode": self.episode, "sac": self.sac.full_state(),
            "generator": self.generator.get_state(), "replay": self.replay.state_dict(),
            "actors": self.actors, "returns": self.returns,
        }

    def _save(self) -> None:
        atomic_torch_save(self.path, self._state())

    def _load(self) -> None:
        state = torch_load(self.path, "SAC checkpoint")
        self.step, self.episode = state["step"], state["episode"]
        self.sac.load_full_state(state["sac"])
        self.generator.set_state(state["generator"])
        self.replay.load_state_dict(state["replay"])
        self.actors, self.returns = state["actors"], state["returns"]

    def _snapshot(self) -> float:
        actor = {k: v.detach().cpu().clone() for k, v in self.sac.actor.state_dict().items()}
        mean_return = evaluate_returns(
            actor_policy(self.sac.actor), self.env, self.config.eval_episodes, self.eval_seed, self.device
        )
        self.actors.append(actor)
        self.returns.append(mean_return)
        return mean_return

    def _act(self, obs: np.ndarray) -> torch.Tensor:
        if self.step < self.config.learning_starts:
            return torch.rand(self.env.act_dim, generator=self.generator, device=self.device) * 2 - 1
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
            return sample_with_log_prob(self.sac.actor(obs_t), self.generator)[0][0]

    def run(self) -> BehaviourRun:
        if self.path.exists():
            self._load()
            self.log(f"resuming SAC on {self.env.env_id} at step {self.step}/{self.budget} from {self.path}")
        scaler = ActionScaler(self.env.action_low, self.env.action_high)
        env = self.env.make()
        bar = progress_bar(self.budget, f"SAC {self.env.env_id}", "step", self.progress, initial=self.step)
        last_save = self.step
        try:
            obs, _ = env.reset(seed=self.reset_seed + self.episode)
            while self.step < self.budget:
                action = self._act(obs)
                next_obs, reward, terminated, truncated, _ = env.step(scaler.to_env(action.cpu().numpy()))
                self.replay.add(obs, action, float(reward), next_obs, terminated, truncated)
                self.step += 1
                if self.step > self.config.learning_starts:
                    self.sac.update(self.replay.sample(self.config.batch_size, self.generator), self.generator)
                if self.step in self.schedule:
                    bar.set_postfix(eval_return=f"{self._snapshot():.1f}", refresh=False)
                bar.update()
                if not (terminated or truncated):
                    obs = next_obs
                    continue
                self.episode += 1
                if self.step - last_save >= self.config.checkpoint_every or self.step == self.budget:
                    self._save()
                    last_save = self.step
                obs, _ = env.reset(seed=self.reset_seed + self.episode)
            if last_save != self.step:
                self._save()
        finally:
            bar.close()
            env.close()
        return BehaviourRun(
            env=self.env, config=self.config, steps=self.schedule, actors=self.actors, returns=self.returns,
            random_return=self.random_return, medium=pick_medium(self.returns, self.random_return),
            replay=self.replay,
        )
