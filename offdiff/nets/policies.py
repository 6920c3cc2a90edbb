"""One-step policies and action selection among sampled candidates."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from offdiff.nets.mlp import mlp

ATANH_MARGIN = 1e-3  # dataset actions are divided by (max_action + 1e-3) before atanh, which keeps it finite


@dataclasses.dataclass
class TanhGaussian:
    """a = max_a·tanh(z), z ~ N(mean, diag std²); mean and std are (B, A)."""

    mean: torch.Tensor
    std: torch.Tensor
    max_action: float

    def rsample(self, generator: torch.Generator) -> torch.Tensor:
        """Reparameterised a = max_a·tanh(μ + σ·ξ), ξ ~ N(0, I), clamped to ±max_a; (B, A)."""
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return (self.max_action * torch.tanh(self.mean + self.std * noise)).clamp(-self.max_action, self.max_action)

    def nll(self, actions: torch.Tensor) -> torch.Tensor:
        """−log N(atanh(a / (max_a + 1e-3)); μ, σ) summed over dims, per sample (B,).

        As in DTQL's code there is no tanh log-Jacobian term; on dataset actions it is a maximum-likelihood
        BC term (the paper's "entropy" term).
        """
        z = torch.atanh(actions / (self.max_action + ATANH_MARGIN))
        # No argument validation: it reads tensors on the host, a device sync inside every training step.
        return -torch.distributions.Normal(self.mean, self.std, validate_args=False).log_prob(z).sum(dim=-1)

    def repeat_interleave(self, k: int) -> TanhGaussian:
        """Each row's distribution k times in a row, (B, A) → (B·k, A): sample k actions per state from one
        forward pass on the B states."""
        return TanhGaussian(self.mean.repeat_interleave(k, 0), self.std.repeat_interleave(k, 0), self.max_action)


class TanhGaussianPolicy(nn.Module):
    """π_θ(a|s), a tanh-squashed diagonal Gaussian (DTQL's `DiagGaussianActorTanhAction`).

    ReLU MLP S → hidden → 2A with orthogonal weights and zero biases; the output splits into (μ, log σ)
    with log σ hard-clamped to `log_std_bounds`.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        max_action: float = 1.0,
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
    ):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim, nn.ReLU)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.orthogonal_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.max_action = max_action
        self.log_std_bounds = log_std_bounds

    def forward(self, obs: torch.Tensor) -> TanhGaussian:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return TanhGaussian(mean, log_std.clamp(*self.log_std_bounds).exp(), self.max_action)


def softmax_choice(candidates: torch.Tensor, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One candidate per row, drawn with probability softmax(logits): candidates (N, K, A), logits (N, K) → (N, A)."""
    pick = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator)
    return candidates.gather(1, pick[..., None].expand(-1, -1, candidates.shape[-1])).squeeze(1)
