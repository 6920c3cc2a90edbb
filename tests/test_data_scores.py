"""Reference scores, normalized scores and task keys."""

from __future__ import annotations

import numpy as np
import pytest

from offdiff.data.scores import RefScores, normalized_score, reference_scores, task_key
from offdiff.errors import OffdiffError


@pytest.mark.parametrize(
    ("dataset_id", "low", "high"),
    [
        ("hopper-medium-v2", -20.272305, 3234.3),
        ("mujoco/hopper/medium-v0", -20.272305, 3234.3),
        ("test/hopper/tiny-v0", -20.272305, 3234.3),
        ("minari:mujoco/halfcheetah/expert-v0", -280.178953, 12135.0),
        ("walker2d-medium-replay-v2", 1.629008, 4592.3),
        ("D4RL/antmaze/umaze-v1", 0.0, 1.0),
        ("antmaze-large-diverse-v2", 0.0, 1.0),
        ("D4RL/kitchen/mixed-v2", 0.0, 4.0),
        ("D4RL/pen/human-v2", 96.262799, 3076.8331017826877),
        ("door-cloned-v1", -56.512833, 2880.5693087298737),
        ("maze2d-medium-v1", 13.13, 277.39),
        ("hdf5:/data/hopper-medium-expert-v2.hdf5", -20.272305, 3234.3),
        ("toy/four_corners", 0.0, 5.0),
        ("toy:gaussians8", 0.0, 1.0),
    ],
)
def test_reference_table(dataset_id: str, low: float, high: float) -> None:
    ref = reference_scores(dataset_id, {"ref_min_score": None, "ref_max_score": 456.0})
    assert (ref.min, ref.max) == (low, high)


def test_metadata_wins_over_the_table() -> None:
    """A locally collected hopper dataset is normalized by its own random policy and expert, not D4RL's."""
    ref = reference_scores("local/hopper/medium-v0", {"ref_min_score": 12.5, "ref_max_score": 2100.0})
    assert (ref.min, ref.max) == (12.5, 2100.0) and "metadata" in ref.source


def test_metadata_fallback_and_missing() -> None:
    meta = {"ref_min_score": 3.5, "ref_max_score": 218.7}
    ref = reference_scores("D4RL/pointmaze/umaze-v2", meta)
    assert (ref.min, ref.max) == (3.5, 218.7) and "metadata" in ref.source
    with pytest.raises(OffdiffError, match="no reference score for dataset mine/robot/data-v0"):
        reference_scores("mine/robot/data-v0", {"ref_min_score": 1.0, "ref_max_score": None})
    with pytest.raises(OffdiffError, match="no reference score"):
        reference_scores("my_file")


def test_normalized_score_arithmetic() -> None:
    ref = RefScores(-20.0, 180.0, "x")
    assert normalized_score(80.0, ref) == pytest.approx(50.0)
    assert isinstance(normalized_score(80.0, ref), float)
    np.testing.assert_allclose(normalized_score(np.array([-20.0, 180.0, 380.0]), ref), [0.0, 100.0, 200.0])


@pytest.mark.parametrize(
    ("dataset_id", "key"),
    [
        ("hopper-medium-replay-v2", "hopper-medium-replay"),
        ("mujoco/hopper/medium-v0", "hopper-medium"),
        ("D4RL/antmaze/umaze-diverse-v1", "antmaze-umaze-diverse"),
        ("D4RL/pen/human-v2", "pen-human"),
        ("D4RL/kitchen/mixed-v2", "kitchen-mixed"),
        ("kitchen-mixed-v0", "kitchen-mixed"),
        ("toy/four_corners", "toy-four_corners"),
        ("toy:four_corners", "toy-four_corners"),
        ("minari:mujoco/walker2d/expert-v0", "walker2d-expert"),
    ],
)
def test_task_key(dataset_id: str, key: str) -> None:
    assert task_key(dataset_id) == key
