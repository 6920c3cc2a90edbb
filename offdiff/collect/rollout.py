"""Behaviour policies, dataset rollouts (whole trajectories of one env) and mean-return evaluation."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np
import torch

from offdiff.collect.envs import EnvInfo
from offdiff.collect.episodes import Episodes
from offdiff.collect.sac import sample_with_log_prob
from offdiff.data.transforms import ActionScaler, ObsNormalizer
from offdiff.eval.evaluate import evaluate
from offdiff.nets import TanhGaussianPolicy
from offdiff.progress import Progress

ActFn = Callable[[torch.Tensor], torch.Tensor]  # observations (B, S) -> actions (B, A) in [-1, 1]
PolicyFactory = Callable[[torch.Generator], ActFn]  # a policy drawing its randomness from the generator


def uniform_policy(act_dim: int) -> PolicyFactory:
    """Actions uniform in the action box (D4RL's `random` data is a random policy too)."""

    def factory(generator: torch.Generator) -> ActFn:
        def act(obs: torch.Tensor) -> torch.Tensor:
            return torch.rand((len(obs), act_dim), generator=generator, device=generator.device) * 2 - 1

        return act

    return factory


def actor_policy(actor: TanhGaussianPolicy) -> PolicyFactory:
    """The stochastic SAC actor: a = tanh(z), z ~ N(μ(s), σ(s)²), as SAC acts while training (and D4RL collected)."""

    def factory(generator: torch.Generator) -> ActFn:
        def act(obs: torch.Tensor) -> torch.Tensor:
            return sample_with_log_prob(actor(obs), generator)[0]

        return act

    return factory


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool, initial: int = 0) -> Progress:
    """A tqdm bar on a terminal; in a log file, a progress line every 30 s (offdiff/progress.py)."""
    return Progress(total, desc, unit=unit, enabled=enabled, initial=initial)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def evaluate_returns(policy: PolicyFactory, env: EnvInfo, episodes: int, seed: int, device: torch.device) -> float:
    """Mean return of `episodes` episodes (reset seeds seed, seed + 1, ...; actions drawn from a fresh generator)."""
    results = evaluate(
        policy(_generator(seed, device)), partial(gym.make, env.env_id), episodes=episodes,
        num_envs=min(episodes, 10), seed=seed, obs_normalizer=ObsNormalizer("none"),
        action_scaler=ActionScaler(env.action_low, env.action_high), device=device,
    )
    return float(np.mean([r.ret for r in results]))


@torch.no_grad()
def rollout(
    policy: PolicyFactory,
    env: EnvInfo,
    *,
    seed: int,
    device: torch.device,
    desc: str,
    progress: bool = True,
    episodes: int | None = None,
    transitions: int | None = None,
) -> Episodes:
    """Run whole episodes (reset seeds seed, seed + 1, ...) until `episodes` episodes or `transitions` steps.

    With `transitions`, the last episode is cut at the limit and marked truncated (unless it terminated there).
    """
    act = policy(_generator(seed, device))
    scaler = ActionScaler(env.action_low, env.action_high)
    observations: list[np.ndarray] = []
    steps: dict[str, list] = {"actions": [], "rewards": [], "terminations": [], "truncations": []}
    lengths: list[int] = []
    by_steps = transitions is not None
    made = env.make()
    bar = progress_bar(transitions if by_steps else episodes, desc, "step" if by_steps else "episode", progress)
    try:
        while (episodes is None or len(lengths) < episodes) and (not by_steps or len(steps["rewards"]) < transitions):
            obs, _ = made.reset(seed=seed + len(lengths))
            trajectory, done, length = [obs], False, 0
            while not done and (not by_steps or len(steps["rewards"]) < transitions):
                obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)[None]
                action = scaler.to_env(act(obs_t)[0].cpu().numpy())
                obs, reward, terminated, truncated, _ = made.step(action)
                for key, value in zip(steps, (action, reward, terminated, truncated), strict=True):
                    steps[key].append(value)
                trajectory.append(obs)
                done, length = terminated or truncated, length + 1
                if by_steps:
                    bar.update()
            if not done:  # cut at the transition limit
                steps["truncations"][-1] = True
            observations.append(np.asarray(trajectory))
            lengths.append(length)
            if not by_steps:
                bar.update()
    finally:
        bar.close()
        made.close()
    return Episodes(observations=np.concatenate(observations), lengths=lengths,
                    **{k: np.asarray(v) for k, v in steps.items()})
