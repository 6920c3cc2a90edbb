"""Vectorized policy evaluation with episodes pre-assigned to environments.

Episode i runs in env i % num_envs with reset seed `seed + i`, so the set of evaluated episodes does
not depend on how long any of them lasts (no bias toward short episodes), and every sub-env is
stepped until its own list is done. One batched `act` call serves all running envs per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from offdiff.data.scores import normalized_score
from offdiff.data.transforms import ActionScaler, ObsNormalizer
from offdiff.records import Scores

if TYPE_CHECKING:
    from offdiff.data.pipeline import PreparedData

ActFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EpisodeResult:
    episode: int
    seed: int
    ret: float
    length: int


def evaluate(
    act: ActFn,
    make_env: Callable[[], gym.Env],
    *,
    episodes: int,
    num_envs: int,
    seed: int,
    obs_normalizer: ObsNormalizer,
    action_scaler: ActionScaler,
    device: torch.device,
) -> list[EpisodeResult]:
    """Run `episodes` episodes of the policy `act` (normalized obs -> actions in [-1, 1])."""
    num_envs = max(1, min(num_envs, episodes))
    queues = [list(range(i, episodes, num_envs)) for i in range(num_envs)]
    envs = SyncVectorEnv([make_env] * num_envs, autoreset_mode=AutoresetMode.DISABLED)
    try:
        obs, _ = envs.reset(seed=[seed + q[0] for q in queues])
        current = [q.pop(0) for q in queues]
        returns = np.zeros(num_envs)
        lengths = np.zeros(num_envs, dtype=np.int64)
        active = np.ones(num_envs, dtype=bool)
        results: list[EpisodeResult] = []
        while active.any():
            obs_t = torch.as_tensor(obs_normalizer.normalize_np(obs), dtype=torch.float32, device=device)
            with torch.no_grad():
                actions = act(obs_t).cpu().numpy()
            obs, reward, terminated, truncated, _ = envs.step(action_scaler.to_env(actions))
            returns += np.where(active, reward, 0.0)
            lengths += active
            done = terminated | truncated
            if not done.any():
                continue
            reset_seeds: list[int | None] = [None] * num_envs
            for i in np.flatnonzero(done & active):
                results.append(EpisodeResult(current[i], seed + current[i], float(returns[i]), int(lengths[i])))
                returns[i], lengths[i] = 0.0, 0
                if queues[i]:
                    current[i] = queues[i].pop(0)
                    reset_seeds[i] = seed + current[i]
                else:
                    active[i] = False
            # Finished envs are reset too (their later steps are ignored): a done sub-env cannot step.
            obs, _ = envs.reset(seed=reset_seeds, options={"reset_mask": done})
        return sorted(results, key=lambda r: r.episode)
    finally:
        envs.close()


class TimedAct:
    """`act` with a count of the rows it answered and the seconds it took (results copied to the host, so a
    device's queued work is inside the time): the policy's acting throughput, environments excluded."""

    def __init__(self, act: ActFn):
        self.act, self.rows, self.seconds = act, 0, 0.0

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        actions = self.act(obs).cpu()
        self.seconds += time.perf_counter() - start
        self.rows += len(obs)
        return actions

    @property
    def actions_per_s(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


def evaluation_row(act: ActFn, data: PreparedData, *, episodes: int, num_envs: int, seed: int,
                   device: torch.device) -> Scores:
    """`evaluate` on `data`'s env and transforms, summarised as an evaluation's scores: per-episode returns,
    lengths and seeds, normalized scores, and their mean (and std)."""
    results = evaluate(act, data.make_env, episodes=episodes, num_envs=num_envs, seed=seed,
                       obs_normalizer=data.obs_normalizer, action_scaler=data.action_scaler, device=device)
    returns = np.array([e.ret for e in results])
    normalized = normalized_score(returns, data.ref)
    return Scores(
        returns=returns.tolist(), lengths=[e.length for e in results], seeds=[e.seed for e in results],
        normalized=np.asarray(normalized).tolist(),
        mean_return=float(returns.mean()), normalized_mean=float(np.mean(normalized)),
        normalized_std=float(np.std(normalized)),
    )
