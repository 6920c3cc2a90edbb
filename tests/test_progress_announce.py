"""A stage's set-up (e.g. EDA labelling its alignment set) has no steps to count: `announce_if_slow` says it is
running once it is slow, and the runner wraps `begin_stage` in it."""

from __future__ import annotations

import functools
import io
import time

import pytest

from offdiff.progress import announce_if_slow
from offdiff.train import runner
from offdiff.train.runner import TrainRequest, train
from offdiff_dql import DiffusionQL


def test_quick_work_prints_nothing():
    out = io.StringIO()
    with announce_if_slow("[x] set-up", after_s=5.0, every_s=5.0, stream=out):
        pass
    assert out.getvalue() == ""


def test_slow_work_is_announced_while_it_runs_and_timed_when_it_ends():
    out = io.StringIO()
    with announce_if_slow("[eda:align] stage set-up", after_s=0.05, every_s=0.1, stream=out):
        time.sleep(0.4)
    lines = out.getvalue().splitlines()
    running = [line for line in lines if line.startswith("[eda:align] stage set-up: running for 0:00:0")]
    assert len(running) >= 2, lines  # once after 0.05 s, then every 0.1 s
    assert lines[-1].startswith("[eda:align] stage set-up: done in 0:00:0") and len(running) == len(lines) - 1


def test_disabled_is_silent_and_an_error_inside_still_stops_the_watcher():
    out = io.StringIO()
    with announce_if_slow("[x] set-up", after_s=0.01, every_s=0.01, enabled=False, stream=out):
        time.sleep(0.05)
    assert out.getvalue() == ""
    with pytest.raises(RuntimeError, match="boom"), announce_if_slow("[x] set-up", after_s=0.01, every_s=0.01,
                                                                     stream=out):
        time.sleep(0.03)
        raise RuntimeError("boom")
    lines = out.getvalue().splitlines()
    time.sleep(0.05)
    assert out.getvalue().splitlines() == lines and lines[-1].startswith("[x] set-up: done in")


def test_the_runner_announces_a_slow_stage_set_up(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "announce_if_slow", functools.partial(announce_if_slow, after_s=0.05, every_s=10))
    slow_begin = DiffusionQL.begin_stage
    monkeypatch.setattr(DiffusionQL, "begin_stage", lambda self, *a: (time.sleep(0.2), slow_begin(self, *a))[1])
    request = TrainRequest(algo="dql", source="toy:four_corners", seed=0, steps=4, device="cpu",
                           overrides={"hidden": "16", "batch_size": "32", "eval_candidates": "4", "n_timesteps": "3"},
                           protocol={"eval_every": 4, "eval_episodes": 2, "eval_envs": 2, "log_every": 2,
                                     "checkpoint_every": 4}, runs_root=tmp_path / "runs")
    train(request, progress=True)
    err = capsys.readouterr().err
    assert "[dql:main] stage set-up (begin_stage): running for 0:00:00" in err
    assert "[dql:main] stage set-up (begin_stage): done in 0:00:00" in err
