"""A run's two random streams (offdiff/runtime.py `seed_run`): module initialisation from the run seed, the
algorithm's draws from a seed derived from it, so the first noise is not the initial weights redrawn."""

from __future__ import annotations

import math

import pytest
import torch

from offdiff.runtime import ALGORITHM_DRAWS, algorithm_generator, derive_seed, seed_run
from offdiff.testing import _Harness
from offdiff.train.runner import Trainer, TrainRequest, plan


@pytest.mark.parametrize("seed", [0, 3])
def test_the_algorithms_draws_are_not_the_initial_weights_redrawn(seed):
    generator = seed_run(seed, "cpu")
    weights = torch.nn.Linear(17, 256).weight.detach().flatten() * math.sqrt(17)  # U(-1, 1)
    draws = torch.rand(weights.numel(), generator=generator) * 2 - 1
    assert abs(torch.corrcoef(torch.stack([weights, draws]))[0, 1].item()) < 0.1
    torch.manual_seed(seed)
    replayed = torch.rand(weights.numel(), generator=torch.Generator().manual_seed(seed)) * 2 - 1
    assert torch.allclose(torch.nn.Linear(17, 256).weight.detach().flatten() * math.sqrt(17), replayed, atol=1e-5), (
        "the stream the run seed itself would give: the initial weights, number for number")


def test_the_runner_and_the_plugin_kit_build_the_algorithm_with_that_generator(tmp_path):
    request = TrainRequest(algo="dql", source="toy:four_corners", seed=2, steps=1, device="cpu",
                           runs_root=str(tmp_path))
    trainer = Trainer(plan(request), progress=False)
    trainer._build()
    expected = torch.Generator().manual_seed(derive_seed(2, ALGORITHM_DRAWS)).get_state()
    assert torch.equal(trainer.algo.generator.get_state(), expected)
    kit = _Harness(trainer.p.cls, {}, steps=1, device="cpu").build(seed=2)
    assert torch.equal(kit.generator.get_state(), algorithm_generator(2, "cpu").get_state())
