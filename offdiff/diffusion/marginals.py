"""α_t, σ_t and λ_t of a variance-preserving process, derived from its log α_t: what DPM-Solver asks of a schedule.

  q(x_t | x_0) = N(α_t·x_0, σ_t²·I),   σ_t = √(1 − α_t²),   λ_t = log α_t − log σ_t  (half the log-SNR)
"""

from __future__ import annotations

import torch

Time = torch.Tensor | float


def as_time(t: Time) -> torch.Tensor:
    """A float time as a float64 scalar tensor; a tensor as it is."""
    return t if isinstance(t, torch.Tensor) else torch.tensor(t, dtype=torch.float64)


class VPMarginals:
    """The marginal coefficients of a VP schedule, given its `log_alpha(t)`; computed in the dtype of `t`."""

    def log_alpha(self, t: Time) -> torch.Tensor:
        raise NotImplementedError

    def alpha(self, t: Time) -> torch.Tensor:
        return self.log_alpha(t).exp()

    def sigma(self, t: Time) -> torch.Tensor:
        """σ_t = √(1 − α_t²), as √(−expm1(2 log α_t)) so it stays accurate near t = 0."""
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def lam(self, t: Time) -> torch.Tensor:
        """λ_t = log α_t − log σ_t."""
        return self.log_alpha(t) - self.sigma(t).log()
