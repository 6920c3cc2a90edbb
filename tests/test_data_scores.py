"""Reference scores by their precedence (user, dataset metadata, D4RL's table for D4RL data), normalization."""

from __future__ import annotations

import numpy as np
import pytest

from offdiff.data.scores import D4RL_SOURCE, RefScores, normalized_score, parse_ref_scores, reference_scores
from offdiff.errors import OffdiffError


@pytest.mark.parametrize(
    ("task", "low", "high"),
    [
        ("hopper-medium", -20.272305, 3234.3),
        ("halfcheetah-expert", -280.178953, 12135.0),
        ("walker2d-medium-replay", 1.629008, 4592.3),
        ("antmaze-large-diverse", 0.0, 1.0),
        ("kitchen-mixed", 0.0, 4.0),
        ("pen-human", 96.262799, 3076.8331017826877),
        ("door-cloned", -56.512833, 2880.5693087298737),
        ("maze2d-medium", 13.13, 277.39),
    ],
)
def test_d4rl_table_applies_to_d4rl_data(task: str, low: float, high: float) -> None:
    ref = reference_scores(task, {}, is_d4rl=True)
    assert (ref.min, ref.max, ref.source) == (low, high, D4RL_SOURCE)


def test_toy_tasks_have_their_own_scores() -> None:
    assert (reference_scores("toy-four_corners").max, reference_scores("toy-gaussians8").max) == (5.0, 1.0)


def test_d4rl_constants_are_never_a_silent_guess_for_other_data() -> None:
    """Minari's re-collected mujoco/hopper data is not D4RL's: no metadata scores, so an error, not D4RL's."""
    with pytest.raises(OffdiffError, match=r"no reference scores for minari:mujoco/hopper/medium-v0: it is not "
                                           r"D4RL's data.*--ref-scores MIN,MAX.*--ref-scores d4rl"):
        reference_scores("hopper-medium", {"ref_min_score": None}, dataset="minari:mujoco/hopper/medium-v0")


def test_precedence_user_then_metadata_then_d4rl() -> None:
    meta = {"ref_min_score": 12.5, "ref_max_score": 2100.0}
    user = reference_scores("hopper-medium", meta, is_d4rl=True, requested="1,2")
    assert (user.min, user.max, user.source) == (1.0, 2.0, "--ref-scores 1,2")
    own = reference_scores("hopper-medium", meta, is_d4rl=True)
    assert (own.min, own.max) == (12.5, 2100.0) and "metadata" in own.source
    asked = reference_scores("hopper-medium", meta, requested="d4rl")
    assert (asked.min, asked.max) == (-20.272305, 3234.3) and "requested with --ref-scores d4rl" in asked.source
    assert reference_scores("hopper-medium", {}, is_d4rl=True).source == D4RL_SOURCE


@pytest.mark.parametrize("text", ["1", "a,b", "1,2,3", "5,5", "3,1", "nan,1", ""])
def test_malformed_ref_scores_are_one_clear_error(text: str) -> None:
    with pytest.raises(OffdiffError, match="--ref-scores"):
        parse_ref_scores(text)


def test_d4rl_request_for_a_task_outside_the_table() -> None:
    assert parse_ref_scores(" D4RL ") == "d4rl"
    with pytest.raises(OffdiffError, match="not in D4RL's reference table"):
        reference_scores("inverteddoublependulum-medium", requested="d4rl")


def test_normalized_score_arithmetic() -> None:
    ref = RefScores(-20.0, 180.0, "x")
    assert normalized_score(80.0, ref) == pytest.approx(50.0)
    assert isinstance(normalized_score(80.0, ref), float)
    np.testing.assert_allclose(normalized_score(np.array([-20.0, 180.0, 380.0]), ref), [0.0, 100.0, 200.0])
