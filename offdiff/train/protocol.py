"""The evaluation and logging protocol: the suite's, the same for every algorithm."""

from __future__ import annotations

import dataclasses

from offdiff.config import AT_LEAST_1, check_config, field

LOCOMOTION = ("halfcheetah", "hopper", "walker2d", "ant-")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """When to evaluate, how many episodes over how many vector envs, how often to log and checkpoint."""

    eval_every: int = field(50_000, "evaluate every N steps (and at the end of each evaluated stage)", AT_LEAST_1)
    eval_episodes: int = field(10, "episodes per evaluation", AT_LEAST_1)
    eval_envs: int = field(10, "vectorized environments the episodes are spread over", AT_LEAST_1)
    log_every: int = field(1000, "average the metrics over N steps and log them (the one host sync)", AT_LEAST_1)
    checkpoint_every: int = field(10_000, "checkpoint every N steps (and at the end of each stage)", AT_LEAST_1)

    def __post_init__(self) -> None:
        check_config(self, "protocol")


def default_protocol(task: str) -> Protocol:
    """The papers' protocol: 10 episodes on Gym locomotion, 100 elsewhere (AntMaze, Adroit, Kitchen, toys)."""
    if task.startswith("toy-"):
        return Protocol(eval_episodes=100, eval_envs=100)
    if task.startswith(LOCOMOTION):
        return Protocol(eval_episodes=10, eval_envs=10)
    return Protocol(eval_episodes=100, eval_envs=20)
