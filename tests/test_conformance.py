"""The conformance suite on every registered plugin (at its `smoke_config`), and the suite itself: it must catch
plugins that break the contract, not only pass good ones."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from offdiff.registry import get_algorithm, plugins
from offdiff.testing import check_algorithm
from offdiff_dql import DiffusionQL

SMALL = {"hidden": 16, "batch_size": 8, "eval_candidates": 2}


@pytest.mark.parametrize("name", list(plugins()))
def test_every_registered_plugin_conforms(name):
    check_algorithm(get_algorithm(name))


class ForgetsEMA(DiffusionQL):
    def modules(self):
        return {"actor": self.actor.net, "critic": self.critic}


class ForgetsOptimizer(DiffusionQL):
    def optimizers(self):
        return {"actor": self.actor_opt}


class IgnoresGenerator(DiffusionQL):
    def act(self, obs, generator=None):
        return super().act(obs, generator=None)


class UnboundedActions(DiffusionQL):
    def act(self, obs, generator=None):
        return 2.0 * super().act(obs, generator)


class Unsquashed(DiffusionQL):
    """A linear policy head without tanh or clamp: inside [-1, 1] near the data, far outside it elsewhere."""

    def act(self, obs, generator=None):
        return 0.1 * obs[:, : self.spec.act_dim]


class ThriceItsBound(DiffusionQL):
    """Squashed, but into [-3, 3]."""

    def act(self, obs, generator=None):
        return 3.0 * torch.tanh(0.1 * obs[:, : self.spec.act_dim])


class ForgetsCounter(DiffusionQL):
    """An update counter that changes the steps but is not in state_dict."""

    def __init__(self, *args):
        super().__init__(*args)
        self.updates = 0

    def update(self, stage, batch, step):
        self.updates += 1
        return super().update(stage, dataclasses.replace(batch, obs=batch.obs + 0.01 * self.updates), step)


class ForgetsGenerator(DiffusionQL):
    """A second generator (observation noise) that is not in state_dict."""

    def __init__(self, *args):
        super().__init__(*args)
        self.noise = torch.Generator(self.device).manual_seed(3)

    def update(self, stage, batch, step):
        noise = torch.randn(batch.obs.shape, generator=self.noise, device=self.device)
        return super().update(stage, dataclasses.replace(batch, obs=batch.obs + 0.01 * noise), step)


class SyncsMetrics(DiffusionQL):
    def update(self, stage, batch, step):
        return {k: float(v) for k, v in super().update(stage, batch, step).items()}


class StagesDisagree(DiffusionQL):
    """Stages that differ from what the class plans for its config: the harness would schedule other lengths."""

    def stages(self):
        return [dataclasses.replace(s, steps=s.steps + 1) for s in super().stages()]


class ReportsFromGlobalRandom(DiffusionQL):
    """A stage report that draws from torch's global stream: a resumed run would diverge from a straight one."""

    def stage_report(self, stage, data, generator):
        return {"noise": float(torch.rand(()))}


class ReportsNaN(DiffusionQL):
    def stage_report(self, stage, data, generator):
        return {"margin": float("nan")}


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (ForgetsEMA, "resume in stage 'main'.*not in state_dict\\(\\): ema_actor"),
        (ForgetsOptimizer, "resume in stage 'main'"),
        (IgnoresGenerator, "deterministic under a fixed generator"),
        (UnboundedActions, r"\[-1, 1\]"),
        (SyncsMetrics, "0-d tensor"),
        (Unsquashed, r"\[-1, 1\] \(squash them.*scaled by 10"),
        (ThriceItsBound, r"\[-1, 1\].*got \|a\| = 2\.9"),
        (ForgetsCounter, r"resume in stage 'main'.*not in state_dict\(\): updates"),
        (ForgetsGenerator, r"resume in stage 'main'.*not in state_dict\(\): noise"),
        (StagesDisagree, r"stages\(\) must equal stage_plan\(config\)"),
        (ReportsFromGlobalRandom, "stage_report after 'main': not deterministic under a fixed generator"),
        (ReportsNaN, "stage_report after 'main': margin = nan is not finite"),
    ],
)
def test_broken_plugins_are_caught(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_algorithm(cls, overrides=SMALL, steps=4)
