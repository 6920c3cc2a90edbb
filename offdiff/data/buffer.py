"""The training buffer: the whole dataset as tensors on the training device, sampled without host syncs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from offdiff.data.transitions import Transitions


@dataclass
class Batch:
    obs: torch.Tensor  # (B, S) float32
    actions: torch.Tensor  # (B, A) float32
    rewards: torch.Tensor  # (B,) float32
    next_obs: torch.Tensor  # (B, S) float32
    not_done: torch.Tensor  # (B,) float32: 0 at true terminations (timeouts are not done)
    index: torch.Tensor  # (B,) long: rows of the buffer


class DeviceBuffer:
    """Transitions on `device`; `sample` draws rows uniformly with replacement from a torch generator."""

    def __init__(self, transitions: Transitions, device: torch.device | str):
        self.device = torch.device(device)
        t = transitions
        self.obs = torch.as_tensor(t.observations, device=self.device)
        self.actions = torch.as_tensor(t.actions, device=self.device)
        self.rewards = torch.as_tensor(t.rewards, device=self.device)
        self.next_obs = torch.as_tensor(t.next_observations, device=self.device)
        self.not_done = torch.as_tensor(~t.terminals, device=self.device).float()

    def __len__(self) -> int:
        return self.rewards.shape[0]

    def gather(self, index: torch.Tensor) -> Batch:
        """The rows `index` (a long tensor on the buffer's device) as a Batch."""
        return Batch(
            self.obs[index], self.actions[index], self.rewards[index], self.next_obs[index],
            self.not_done[index], index,
        )

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """`batch_size` rows uniformly with replacement; `generator` must live on the buffer's device."""
        index = torch.randint(len(self), (batch_size,), generator=generator, device=self.device)
        return self.gather(index)

    def subset(self, indices: torch.Tensor | list[int]) -> DeviceBuffer:
        """A new buffer holding only the rows `indices`."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        sub = DeviceBuffer.__new__(DeviceBuffer)
        sub.device = self.device
        for name in ("obs", "actions", "rewards", "next_obs", "not_done"):
            setattr(sub, name, getattr(self, name)[index])
        return sub
