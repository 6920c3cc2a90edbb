"""Minari sources: flattening, terminals vs timeouts, the cache, missing datasets, env checks, listings."""

from __future__ import annotations

import os
from pathlib import Path

import minari
import numpy as np
import pytest

from offdiff.data.scores import D4RL_SOURCE
from offdiff.data.sources import describe, list_local, resolve
from offdiff.data.transitions import cache_dir
from offdiff.errors import OffdiffError


def test_flatten_matches_episodes(tiny_hopper_minari: str) -> None:
    source = resolve(tiny_hopper_minari)
    t = source.load()
    episodes = list(minari.load_dataset("test/hopper/tiny-v0").iterate_episodes())
    assert len(t) == sum(len(ep.actions) for ep in episodes)
    start = 0
    for ep in episodes:
        rows = slice(start, start + len(ep.actions))
        np.testing.assert_array_equal(t.observations[rows], ep.observations[:-1].astype(np.float32))
        np.testing.assert_array_equal(t.next_observations[rows], ep.observations[1:].astype(np.float32))
        np.testing.assert_array_equal(t.actions[rows], ep.actions)
        np.testing.assert_array_equal(t.rewards[rows], ep.rewards.astype(np.float32))
        start += len(ep.actions)
    assert t.observations.dtype == np.float32
    np.testing.assert_allclose(t.episode_returns(), [ep.rewards.sum() for ep in episodes], rtol=1e-5)


def test_terminals_and_timeouts_stay_apart(tiny_hopper_minari: str) -> None:
    t = resolve(tiny_hopper_minari).load()
    episodes = list(minari.load_dataset("test/hopper/tiny-v0").iterate_episodes())
    np.testing.assert_array_equal(t.terminals, np.concatenate([ep.terminations for ep in episodes]))
    np.testing.assert_array_equal(t.timeouts, np.concatenate([ep.truncations for ep in episodes]))
    assert t.terminals.sum() >= 2 and t.timeouts.sum() >= 2
    assert not (t.terminals & t.timeouts).any()


def test_info(tiny_hopper_minari: str) -> None:
    info = resolve(tiny_hopper_minari).info()
    assert (info.dataset_id, info.task, info.eval_env) == ("test/hopper/tiny-v0", "hopper-tiny", "Hopper-v5")
    assert (info.obs_dim, info.act_dim, info.num_episodes) == (11, 3, 8)
    assert info.action_low == (-1.0, -1.0, -1.0) and info.action_high == (1.0, 1.0, 1.0)
    assert info.metadata["author"] == ["offdiff tests"]  # a set in Minari, JSON-able here
    assert info.task_rule == "the Minari id test/hopper/tiny-v0" and not info.is_d4rl
    with pytest.raises(OffdiffError, match="not D4RL's data"):  # like Minari's mujoco/ data: no scores of its own
        resolve(tiny_hopper_minari).ref_scores()
    assert D4RL_SOURCE in resolve(tiny_hopper_minari).ref_scores("d4rl").source


def test_cache_hit_and_corrupt_cache_rebuilt(tiny_hopper_minari: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = resolve(tiny_hopper_minari).load()
    [cached] = (cache_dir() / "transitions").glob("*.npz")
    with monkeypatch.context() as m:
        m.setattr("offdiff.data.minari_source.MinariSource._flatten", _fail)
        second = resolve(tiny_hopper_minari).load()  # from the cache: flattening would fail
    for name, value in first.arrays().items():
        np.testing.assert_array_equal(getattr(second, name), value)
    cached.write_bytes(b"not a zip file")
    third = resolve(tiny_hopper_minari).load()
    np.testing.assert_array_equal(third.observations, first.observations)
    assert len(np.load(cached)["rewards"]) == len(first)  # rewritten
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp files left


def _fail(self: object) -> None:
    raise AssertionError("should have been read from the cache")


def test_missing_dataset_says_how_to_fetch() -> None:
    with pytest.raises(OffdiffError, match=r"offdiff data fetch mujoco/hopper/medium-v0") as e:
        resolve("minari:mujoco/hopper/medium-v0")
    assert os.environ["MINARI_DATASETS_PATH"] in str(e.value)


def test_dims_mismatch_names_both_shapes(tiny_hopper_minari: str) -> None:
    with pytest.raises(OffdiffError, match=r"\(11,\).*HalfCheetah-v5.*\(17,\)"):
        resolve(tiny_hopper_minari, eval_env="HalfCheetah-v5").info()


def test_bad_eval_env_is_clear(tiny_hopper_minari: str) -> None:
    with pytest.raises(OffdiffError, match="cannot make evaluation env NoSuchEnv-v0"):
        resolve(tiny_hopper_minari, eval_env="NoSuchEnv-v0").info()


def test_eval_env_and_loading_offline(tiny_hopper_minari: str) -> None:
    source = resolve(tiny_hopper_minari)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    env = source.make_env()
    obs, _ = env.reset(seed=0)
    assert env.spec.id == "Hopper-v5" and obs.shape == (11,)


def test_list_local_and_describe(tiny_hopper_minari: str) -> None:
    [row] = list_local()
    assert row["id"] == "test/hopper/tiny-v0" and row["env"] == "Hopper-v5"
    assert row["episodes"] == 8 and row["steps"] > 0 and row["size_mb"] > 0
    assert row["source"] == "minari:test/hopper/tiny-v0" and row["ref_scores"] is None
    described = describe(tiny_hopper_minari)
    assert described["num_episodes"] == 8 and described["ref_scores"] is None
    assert "--ref-scores" in described["ref_scores_error"]


def test_unknown_scheme_lists_schemes() -> None:
    with pytest.raises(OffdiffError, match="minari:.*d4rl:.*hdf5:.*toy:"):
        resolve("rlds:hopper-medium-v2")
    with pytest.raises(OffdiffError, match="minari:"):
        resolve("hopper-medium-v2")


def test_store_is_per_test(tmp_path: Path) -> None:
    assert not list(Path(os.environ["MINARI_DATASETS_PATH"]).iterdir())
    assert list_local() == []
