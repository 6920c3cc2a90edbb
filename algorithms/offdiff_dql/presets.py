"""Diffusion-QL's per-task hyperparameters (Wang et al. 2023, `main.py::hyperparameters` of the release).

Columns: actor lr, η (Q weight), max-Q backup, reward transform, training steps, gradient-norm clip.
One "epoch" of the release is 1000 steps.
"""

from __future__ import annotations

from typing import Any

#            task                            lr     eta    maxQ   reward         epochs  gn
_TABLE = [
    ("halfcheetah-medium",             3e-4,  1.0,   False, "none",        2000,  9.0),
    ("hopper-medium",                  3e-4,  1.0,   False, "none",        2000,  9.0),
    ("walker2d-medium",                3e-4,  1.0,   False, "none",        2000,  1.0),
    ("halfcheetah-medium-replay",      3e-4,  1.0,   False, "none",        2000,  2.0),
    ("hopper-medium-replay",           3e-4,  1.0,   False, "none",        2000,  4.0),
    ("walker2d-medium-replay",         3e-4,  1.0,   False, "none",        2000,  4.0),
    ("halfcheetah-medium-expert",      3e-4,  1.0,   False, "none",        2000,  7.0),
    ("hopper-medium-expert",           3e-4,  1.0,   False, "none",        2000,  5.0),
    ("walker2d-medium-expert",         3e-4,  1.0,   False, "none",        2000,  5.0),
    ("antmaze-umaze",                  3e-4,  0.5,   False, "cql_antmaze", 1000,  2.0),
    ("antmaze-umaze-diverse",          3e-4,  2.0,   True,  "cql_antmaze", 1000,  3.0),
    ("antmaze-medium-play",            1e-3,  2.0,   True,  "cql_antmaze", 1000,  2.0),
    ("antmaze-medium-diverse",         3e-4,  3.0,   True,  "cql_antmaze", 1000,  1.0),
    ("antmaze-large-play",             3e-4,  4.5,   True,  "cql_antmaze", 1000, 10.0),
    ("antmaze-large-diverse",          3e-4,  3.5,   True,  "cql_antmaze", 1000,  7.0),
    ("pen-human",                      3e-5,  0.15,  False, "normalize",   1000,  7.0),
    ("pen-cloned",                     3e-5,  0.1,   False, "normalize",   1000,  8.0),
    ("kitchen-complete",               3e-4,  0.005, False, "none",         250,  9.0),
    ("kitchen-partial",                3e-4,  0.005, False, "none",        1000, 10.0),
    ("kitchen-mixed",                  3e-4,  0.005, False, "none",        1000, 10.0),
]

PRESETS: dict[str, dict[str, Any]] = {
    task: {"lr": lr, "eta": eta, "max_q_backup": max_q, "reward_transform": reward,
           "steps": epochs * 1000, "grad_norm": gn}
    for task, lr, eta, max_q, reward, epochs, gn in _TABLE
}

# The four-corner bandit of the paper's toy experiment (`run_toy_ql.py`): η = 2.5.
PRESETS["toy-four_corners"] = {"eta": 2.5}
