"""Shared fixtures: isolated data folders for every test, a tiny real Minari dataset, a D4RL-style file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import submitit  # noqa: F401  (imported before any test: see below)
import torch

TINY_HOPPER_ID = "test/hopper/tiny-v0"

# submitit sets up its log handlers on the sys.stdout / sys.stderr of the moment it is first imported. Imported
# inside a test, they would keep that test's captured streams, closed when it ends; a later test that runs a grid
# then failed, and pytest lost its stderr (test_grid_keep_final after test_fidelity_eda, run on their own).
# Imported here, they keep the session's streams.

# The tests' networks are tiny: one intra-op thread is as fast as two and immune to oversubscription on a
# busy 2-core machine; subprocesses (local and SLURM jobs) inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_data_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own empty offdiff cache and Minari store, and huggingface_hub offline."""
    monkeypatch.setenv("OFFDIFF_CACHE", str(tmp_path_factory.mktemp("offdiff_cache")))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari_store")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _hopper_episodes(n_episodes: int = 8, seed: int = 0) -> list:
    """Random Hopper-v5 episodes: even ones run to termination (or 60 steps), odd ones are cut at 8 steps."""
    from minari.data_collector import EpisodeBuffer

    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n_episodes):
        limit = 60 if i % 2 == 0 else 8
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
        for step in range(limit):
            action = rng.uniform(-1, 1, size=3).astype(np.float32)
            obs, reward, terminated, _, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(not terminated and step == limit - 1)
            if terminated:
                break
        episodes.append(EpisodeBuffer(
            id=i, observations=np.array(observations), actions=np.array(actions), rewards=np.array(rewards),
            terminations=np.array(terminations), truncations=np.array(truncations),
        ))
    env.close()
    return episodes


@pytest.fixture(scope="session")
def tiny_hopper_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Minari store holding `test/hopper/tiny-v0` (built once per session; no ref scores in metadata)."""
    import minari

    store = tmp_path_factory.mktemp("tiny_hopper_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        minari.create_dataset_from_buffers(
            dataset_id=TINY_HOPPER_ID, buffer=_hopper_episodes(), env=gym.make("Hopper-v5"),
            eval_env="Hopper-v5", algorithm_name="random", author="offdiff tests",
            author_email="tests@offdiff.invalid", code_permalink="https://example.invalid/offdiff",
            description="random Hopper-v5 episodes for offdiff tests",
        )
    return store


@pytest.fixture
def tiny_hopper_minari(isolated_data_dirs: None, tiny_hopper_store: Path) -> str:
    """The source string of a real 8-episode Hopper-v5 Minari dataset in this test's Minari store."""
    shutil.copytree(tiny_hopper_store, os.environ["MINARI_DATASETS_PATH"], dirs_exist_ok=True)
    return f"minari:{TINY_HOPPER_ID}"


def write_d4rl_file(path: Path, lengths: tuple[int, ...] = (30, 50, 20, 40, 60), seed: int = 0,
                    attrs: dict | None = None, **override) -> Path:
    """A D4RL-layout HDF5 file with Hopper shapes (obs 11, act 3); episodes 0 and 2 terminate, the rest time out.

    `override` replaces (or, with value None, drops) any of the six arrays; `attrs` become file attributes.
    """
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    ends = np.cumsum(lengths) - 1
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    for i, end in enumerate(ends):
        (terminals if i in (0, 2) else timeouts)[end] = True
    observations = rng.normal(size=(n, 11)).astype(np.float32)
    arrays = {
        "observations": observations,
        "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
        "rewards": rng.normal(1.0, 0.5, size=n).astype(np.float32),
        "next_observations": (observations + 0.01 * rng.normal(size=(n, 11))).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
    }
    arrays.update(override)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f.create_dataset(key, data=value)
        f.attrs.update(attrs or {})
    return path


@pytest.fixture
def d4rl_hdf5_file(tmp_path: Path) -> Path:
    """A 200-transition D4RL-layout file `hopper-tiny-v2.hdf5` (evaluate with eval_env="Hopper-v5")."""
    return write_d4rl_file(tmp_path / "hopper-tiny-v2.hdf5")
