"""Task names by the documented rules: D4RL file names, Minari ids, HDF5 attributes."""

from __future__ import annotations

import pytest

from offdiff.data.d4rl import catalogue, file_name, is_d4rl_file_name
from offdiff.data.tasks import TaskName, task_from_attributes, task_key


@pytest.mark.parametrize(
    ("dataset_id", "key"),
    [
        ("hopper_medium-v2", "hopper-medium"),  # D4RL's own file names: underscores
        ("hdf5:/data/d4rl/halfcheetah_medium_expert-v2.hdf5", "halfcheetah-medium-expert"),
        ("hopper-medium-replay-v2", "hopper-medium-replay"),  # D4RL's dataset ids: hyphens
        ("walker2d_medium_replay-v1", "walker2d-medium-replay"),
        ("hopper_medium-v0", "hopper-medium"),
        ("Hopper_Medium", "hopper-medium"),
        ("hopper-v5-medium", "hopper-medium"),  # a version token anywhere
        ("d4rl:walker2d-medium-expert-v2", "walker2d-medium-expert"),
        ("mujoco/hopper/medium-v0", "hopper-medium"),  # Minari's mujoco/ namespace
        ("minari:mujoco/walker2d/expert-v0", "walker2d-expert"),
        ("D4RL/antmaze/umaze-diverse-v1", "antmaze-umaze-diverse"),  # Minari's D4RL/ namespace
        ("D4RL/antmaze/large-play-v1", "antmaze-large-play"),
        ("D4RL/pen/human-v2", "pen-human"),
        ("D4RL/kitchen/mixed-v2", "kitchen-mixed"),
        ("local/inverteddoublependulum/medium-v0", "inverteddoublependulum-medium"),
        ("toy/four_corners", "toy-four_corners"),
        ("toy:four_corners", "toy-four_corners"),
    ],
)
def test_task_key(dataset_id: str, key: str) -> None:
    assert task_key(dataset_id) == key


def test_hdf5_attributes_task_first_then_dataset() -> None:
    fallback = TaskName("my-file", "the file name")
    assert task_from_attributes({"task": "Hopper-Medium", "dataset": "x"}, fallback).name == "hopper-medium"
    from_dataset = task_from_attributes({"dataset": "hopper-v5-medium"}, fallback)
    assert from_dataset == TaskName("hopper-medium", "the file's `dataset` attribute 'hopper-v5-medium'")
    assert task_from_attributes({"task": " ", "other": 1}, fallback) is fallback


def test_d4rl_file_names() -> None:
    assert all(is_d4rl_file_name(file_name(name).removesuffix(".hdf5")) for name in catalogue())
    assert file_name("hopper-medium-replay-v2") == "hopper_medium_replay-v2.hdf5"
    assert is_d4rl_file_name("hopper-medium-v2") and is_d4rl_file_name("pen-human-v1")
    assert not is_d4rl_file_name("hopper-tiny-v2") and not is_d4rl_file_name("my_hopper_data")
