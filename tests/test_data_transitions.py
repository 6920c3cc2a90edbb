"""Transitions: validation, episode returns, the atomic cache."""

from __future__ import annotations

import numpy as np
import pytest

from offdiff.data.transitions import Transitions, cache_dir, load_cached
from offdiff.errors import OffdiffError


def _transitions(n: int = 6) -> Transitions:
    zeros = np.zeros((n, 2))
    return Transitions(zeros, np.zeros((n, 1)), np.arange(n, dtype=float), zeros, np.zeros(n), np.zeros(n))


def test_dtypes_and_replace() -> None:
    t = _transitions()
    assert t.observations.dtype == np.float32 and t.terminals.dtype == bool
    r = t.replace(rewards=np.ones(6))
    assert r.rewards.dtype == np.float32 and r.rewards.sum() == 6 and t.rewards.sum() == 15


def test_episode_returns_split_on_terminals_timeouts_and_end() -> None:
    t = _transitions().replace(terminals=[0, 1, 0, 0, 0, 0], timeouts=[0, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(t.episode_returns(), [0 + 1, 2 + 3, 4 + 5])
    assert _transitions().episode_returns().tolist() == [15.0]


@pytest.mark.parametrize("field", ["observations", "actions", "rewards", "next_observations"])
def test_validate_names_field_and_row(field: str) -> None:
    t = _transitions()
    bad = getattr(t, field).copy()
    bad[4] = np.inf
    with pytest.raises(OffdiffError, match=rf"dataset ds: field {field} has NaN/inf.*row 4"):
        t.replace(**{field: bad}).validate("ds")


def test_validate_shapes() -> None:
    with pytest.raises(OffdiffError, match=r"ds: field next_observations has shape \(6, 3\)"):
        _transitions().replace(next_observations=np.zeros((6, 3))).validate("ds")
    with pytest.raises(OffdiffError, match=r"field terminals has shape \(5,\)"):
        _transitions().replace(terminals=np.zeros(5)).validate("ds")
    with pytest.raises(OffdiffError, match="no transitions"):
        _transitions(0).validate("ds")


def test_cache_builds_once_and_rebuilds_corrupt_files() -> None:
    calls = []

    def build() -> Transitions:
        calls.append(1)
        return _transitions()

    first = load_cached("a/b:c", build)
    second = load_cached("a/b:c", build)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.rewards, second.rewards)
    [path] = (cache_dir() / "transitions").iterdir()
    path.write_bytes(path.read_bytes()[:50])  # truncated
    np.testing.assert_array_equal(load_cached("a/b:c", build).rewards, first.rewards)
    assert len(calls) == 2 and list(path.parent.iterdir()) == [path]
