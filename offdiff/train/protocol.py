"""The evaluation and logging protocol: the suite's, the same for every algorithm."""

from __future__ import annotations

import dataclasses

LOCOMOTION = ("halfcheetah", "hopper", "walker2d", "ant-")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """When to evaluate, how many episodes over how many vector envs, how often to log and checkpoint."""

    eval_every: int = 50_000
    eval_episodes: int = 10
    eval_envs: int = 10
    log_every: int = 1000
    checkpoint_every: int = 10_000


def default_protocol(task: str) -> Protocol:
    """The papers' protocol: 10 episodes on Gym locomotion, 100 elsewhere (AntMaze, Adroit, Kitchen, toys)."""
    if task.startswith("toy-"):
        return Protocol(eval_episodes=100, eval_envs=100)
    if task.startswith(LOCOMOTION):
        return Protocol(eval_episodes=10, eval_envs=10)
    return Protocol(eval_episodes=100, eval_envs=20)
