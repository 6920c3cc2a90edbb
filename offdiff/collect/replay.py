"""SAC's replay buffer: every training transition in order, on the training device, never overwritten.

Keeping the whole history (capacity = the budget, as in D4RL's 1M-step runs) is what makes the
`medium-replay` dataset: the buffer's first steps up to the medium snapshot.
"""

from __future__ import annotations

import numpy as np
import torch

from offdiff.collect.sac import Batch
from offdiff.errors import OffdiffError

_FIELDS = ("obs", "act", "reward", "next_obs", "terminated", "truncated")


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.capacity, self.size = capacity, 0
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.act = torch.zeros(capacity, act_dim, device=device)  # policy units, [-1, 1]
        self.reward = torch.zeros(capacity, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.truncated = torch.zeros(capacity, dtype=torch.bool, device=device)

    def add(
        self, obs: np.ndarray, act: torch.Tensor, reward: float, next_obs: np.ndarray, terminated: bool, truncated: bool
    ) -> None:
        if self.size == self.capacity:
            raise OffdiffError(f"replay buffer full ({self.capacity} transitions)")
        i = self.size
        self.obs[i] = torch.as_tensor(obs)
        self.act[i] = act
        self.reward[i] = reward
        self.next_obs[i] = torch.as_tensor(next_obs)
        self.terminated[i] = terminated
        self.truncated[i] = truncated
        self.size += 1

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        idx = torch.randint(self.size, (batch_size,), generator=generator, device=self.obs.device)
        return self.obs[idx], self.act[idx], self.reward[idx], self.next_obs[idx], (~self.terminated[idx]).float()

    def arrays(self, stop: int) -> dict[str, np.ndarray]:
        """The first `stop` transitions as host arrays."""
        return {name: getattr(self, name)[:stop].cpu().numpy() for name in _FIELDS}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name)[: self.size].cpu().clone() for name in _FIELDS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.size = len(state["reward"])
        for name in _FIELDS:
            getattr(self, name)[: self.size] = state[name]
