"""EDA's per-task settings: β from the paper's App. E, Table 2; reward transform and expectile per domain.

Rewards as the release preprocesses them (§2.2 of the spec): Gym locomotion r·1000/(max return − min
return) (`iql_locomotion`, the config default), AntMaze r − 1 (`iql_antmaze`), Kitchen unchanged.
IQL's expectile τ is 0.9 on AntMaze and 0.7 elsewhere. The 2-D toy tasks follow the release's toy branch:
no state input, behavior lr 1e-4, raw rewards, and dataset actions with their true rewards as candidates.
"""

from __future__ import annotations

from typing import Any

from offdiff.data.toy import TOY_TASKS

_BETA = {
    "halfcheetah-medium-expert": 2.0,
    "halfcheetah-medium": 0.1,
    "halfcheetah-medium-replay": 0.2,
    "hopper-medium-expert": 2.0,
    "hopper-medium": 0.2,
    "hopper-medium-replay": 0.2,
    "walker2d-medium-expert": 0.3,
    "walker2d-medium": 0.5,
    "walker2d-medium-replay": 0.1,
    "antmaze-umaze": 0.5,
    "antmaze-umaze-diverse": 5.0,
    "antmaze-medium-play": 1.0,
    "antmaze-medium-diverse": 1.0,
    "kitchen-complete": 2.0,
    "kitchen-mixed": 3.0,
    "kitchen-partial": 3.0,
}


# Every D4RL AntMaze and Kitchen task gets its domain's settings, with or without a β from the paper
# (antmaze-large-play/-diverse are not in the paper: they keep the release's default β = 1.0).
_DOMAIN_TASKS = (
    "antmaze-umaze", "antmaze-umaze-diverse", "antmaze-medium-play", "antmaze-medium-diverse", "antmaze-large-play",
    "antmaze-large-diverse", "kitchen-complete", "kitchen-partial", "kitchen-mixed",
)


def _domain(task: str) -> dict[str, Any]:
    if task.startswith("antmaze"):
        return {"reward_transform": "iql_antmaze", "expectile": 0.9}
    if task.startswith("kitchen"):
        return {"reward_transform": "none"}
    return {}


PRESETS: dict[str, dict[str, Any]] = {
    task: {**({"beta": _BETA[task]} if task in _BETA else {}), **_domain(task)}
    for task in dict.fromkeys([*_BETA, *_DOMAIN_TASKS])
}
PRESETS.update({
    f"toy-{name}": {"reward_transform": "none", "state_input": False, "behavior_lr": 1e-4, "candidates": "dataset"}
    for name in TOY_TASKS
})
