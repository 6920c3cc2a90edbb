"""Behaviour cloning as an offdiff plugin: a deterministic MLP policy regressed onto the dataset's actions."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import nn

from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec, Metrics, Stage
from offdiff.config import AT_LEAST_1, POSITIVE, budget, field
from offdiff.data.buffer import Batch


@dataclasses.dataclass(frozen=True)
class BCConfig(AlgorithmConfig):
    """Defaults are the algorithm's (here: a common BC baseline); `--set key=value` changes them."""

    steps: int = budget(100_000, "behaviour cloning steps")  # a stage length: `--steps N` sets it
    batch_size: int = field(256, "transitions per gradient step", AT_LEAST_1)
    hidden: int = field(256, "width of the policy's two hidden layers", AT_LEAST_1)
    lr: float = field(3e-4, "learning rate, Adam", POSITIVE)


class BehaviorCloning(Algorithm):
    name = "bc"
    Config = BCConfig
    smoke_config = {"hidden": 32, "batch_size": 16}  # small enough for the conformance suite to run in seconds

    def __init__(self, config: BCConfig, spec: EnvSpec, device: torch.device, generator: torch.Generator):
        super().__init__(config, spec, device, generator)  # sets self.config, .spec, .device, .generator
        self.policy = nn.Sequential(
            nn.Linear(spec.obs_dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, spec.act_dim), nn.Tanh(),  # actions in [-1, 1], as the suite expects
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)

    @classmethod
    def stage_plan(cls, config: BCConfig) -> list[Stage]:  # from the config alone: grids are planned without nets
        return [Stage("bc", steps=config.steps, batch_size=config.batch_size)]

    def update(self, stage: str, batch: Batch, step: int) -> Metrics:
        loss = (self.policy(batch.obs) - batch.actions).pow(2).sum(-1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"bc_loss": loss.detach()}  # 0-d tensors: the suite reads them every log_every steps

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.policy(obs)

    def modules(self) -> Mapping[str, nn.Module]:
        return {"policy": self.policy}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"policy": self.optimizer}
