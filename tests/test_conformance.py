"""The conformance suite itself: it must catch plugins that break the contract, not only pass good ones."""

from __future__ import annotations

import pytest

from offdiff.testing import check_algorithm
from offdiff_dql import DiffusionQL

SMALL = {"hidden": 16, "batch_size": 8, "eval_candidates": 2}


class ForgetsEMA(DiffusionQL):
    def modules(self):
        return {"actor": self.actor, "critic": self.critic}


class ForgetsOptimizer(DiffusionQL):
    def optimizers(self):
        return {"actor": self.actor_opt}


class IgnoresGenerator(DiffusionQL):
    def act(self, obs, generator=None):
        return super().act(obs, generator=None)


class UnboundedActions(DiffusionQL):
    def act(self, obs, generator=None):
        return 2.0 * super().act(obs, generator)


class SyncsMetrics(DiffusionQL):
    def update(self, stage, batch, step):
        return {k: float(v) for k, v in super().update(stage, batch, step).items()}


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (ForgetsEMA, "resume in stage 'main'"),
        (ForgetsOptimizer, "resume in stage 'main'"),
        (IgnoresGenerator, "deterministic under a fixed generator"),
        (UnboundedActions, r"\[-1, 1\]"),
        (SyncsMetrics, "0-d tensor"),
    ],
)
def test_broken_plugins_are_caught(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_algorithm(cls, overrides=SMALL, steps=4)
