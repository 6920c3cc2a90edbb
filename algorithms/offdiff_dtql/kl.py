"""DQL-KL, DTQL's comparison variant (`regularizer="kl"`): the reverse KL D_KL(π_θ ‖ μ_φ) distilled
DMD-style in place of the trust-region loss.

  a_θ = G_θ(σ_g·z, σ_g, s),  z ~ N(0, I), σ_g = 2.5      (the raw network output: no preconditioning, no clamp)
  x_σ = a_θ + σε,  D_real = D_φ(x_σ; σ, s),  D_fake = D_ψ(x_σ; σ, s)      (no gradient through either)
  g = (D_fake − D_real) / mean_dims |a_θ − D_real|
  L_KL = ½·mean (a_θ − stopgrad(a_θ − g))²                 (its gradient in a_θ is g / (B·A))
  L_fake(ψ) = the EDM loss of D_ψ on stopgrad(a_θ)

G_θ and F_ψ have the score network's architecture and are initialised from the pretrained F_φ.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from offdiff.diffusion import EDM
from offdiff.nets import hard_update_


class KLDistillation(nn.Module):
    """The one-step implicit generator G_θ (`generator`) and the fake score model D_ψ (`fake`)."""

    def __init__(self, real: EDM, act_dim: int, generation_sigma: float):
        super().__init__()
        self.act_dim = act_dim
        self.generator = copy.deepcopy(real.net)
        self.fake = EDM(copy.deepcopy(real.net), real.schedule, act_dim, real.clip)
        self.generation_sigma = generation_sigma

    def init_from(self, real: EDM) -> None:
        """G_θ ← F_φ and F_ψ ← F_φ (done once, when the main phase starts)."""
        hard_update_(self.generator, real.net)
        hard_update_(self.fake.net, real.net)

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """a_θ = G_θ(σ_g·z, σ_g, s): the raw value σ_g is the time input, as in the paper's code; (B, A)."""
        z = torch.randn((obs.shape[0], self.act_dim), generator=generator, device=obs.device, dtype=obs.dtype)
        t = torch.full((obs.shape[0],), self.generation_sigma, device=obs.device, dtype=obs.dtype)
        return self.generator(self.generation_sigma * z, t, obs)

    def kl_loss(
        self, actions: torch.Tensor, obs: torch.Tensor, real: EDM, generator: torch.Generator
    ) -> torch.Tensor:
        """L_KL, the DMD surrogate whose gradient in a_θ is the normalised score difference g."""
        with torch.no_grad():
            sigma = real.schedule.sample_sigma(actions.shape[0], generator, actions.device).to(actions.dtype)
            noisy = actions + sigma * torch.randn(actions.shape, generator=generator, device=actions.device,
                                                  dtype=actions.dtype)
            d_real, d_fake = real(noisy, sigma, obs), self.fake(noisy, sigma, obs)
            g = (d_fake - d_real) / (actions - d_real).abs().mean(dim=-1, keepdim=True)
        return 0.5 * F.mse_loss(actions, actions.detach() - g)
