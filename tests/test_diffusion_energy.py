"""The continuous VP process with an energy backbone (the bottleneck diffusion model): ε̂ = −σ_t ∇_a f against
finite differences, its loss and sampler against a Gaussian whose diffused log-density is known in closed form,
the same process with a noise backbone, and the energy network's layout."""

import pytest
import torch
from torch import nn

from offdiff.diffusion import ContinuousVP, ContinuousVPSchedule, EnergyMLP

SCHEDULE = ContinuousVPSchedule()
MEAN = torch.tensor([0.4, -0.2], dtype=torch.float64)
STD = torch.tensor([0.5, 1.0], dtype=torch.float64)


class GaussianEnergy(nn.Module):
    """f(x | t) = log N(x; α_t m, v_t) + const, v_t = α_t² s² + σ_t²: the exact diffused log-density."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        alpha, sigma = SCHEDULE.alpha(t)[:, None], SCHEDULE.sigma(t)[:, None]
        variance = alpha**2 * STD**2 + sigma**2
        return -0.5 * ((x - alpha * MEAN) ** 2 / variance).sum(-1)


def test_noise_prediction_is_minus_sigma_times_the_energy_gradient():
    torch.manual_seed(0)
    net = EnergyMLP(obs_dim=4, act_dim=3, hidden=32, num_blocks=2, dropout=0.0, time_dim=8).double()
    bdm = ContinuousVP(net, SCHEDULE, 3, prediction="energy")
    x, cond = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    t = torch.linspace(0.001, 1.0, 6, dtype=torch.float64)
    with torch.no_grad():  # the input gradient is taken even inside no_grad (sampling runs there)
        eps = bdm.noise(x, t, cond)
    h = 1e-6
    finite = torch.stack([
        (bdm.energy(x + h * e, t, cond) - bdm.energy(x - h * e, t, cond)) / (2 * h)
        for e in torch.eye(3, dtype=torch.float64)
    ], dim=-1)
    torch.testing.assert_close(eps, -SCHEDULE.sigma(t)[:, None] * finite, rtol=1e-6, atol=1e-8)
    assert bdm.energy(x, t, cond).shape == (6,)


def test_training_loss_back_propagates_through_the_input_gradient():
    torch.manual_seed(0)
    bdm = ContinuousVP(EnergyMLP(obs_dim=4, act_dim=3, hidden=32, num_blocks=1, time_dim=8), SCHEDULE, 3, "energy")
    loss = bdm.loss(torch.randn(16, 3), torch.randn(16, 4), torch.Generator().manual_seed(0))
    loss.backward()
    grads = {name: p.grad for name, p in bdm.named_parameters()}
    head_bias = f"net.trunk.{len(bdm.net.trunk) - 1}.bias"
    assert grads.pop(head_bias) is None, "a constant offset of f does not change ∇_a f"
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # the action embedding only reaches the loss through ∇_a f: a non-zero gradient proves the double backprop
    assert grads["net.action.weight"].abs().sum() > 0
    assert "net.time.0.W" in bdm.state_dict() and not any("W" in n for n in grads), "Fourier W: saved, fixed"


def test_loss_of_the_exact_energy_matches_its_closed_form():
    """With the true energy, ε̂ − z = (σα(x₀ − m) − α²s²z)/v, so E‖ε̂ − z‖² = Σ_j E_t[α_t² s_j² / v_t]."""
    bdm = ContinuousVP(GaussianEnergy(), SCHEDULE, 2, prediction="energy")
    generator = torch.Generator().manual_seed(0)
    x0 = MEAN + STD * torch.randn(200_000, 2, generator=generator, dtype=torch.float64)
    measured = float(bdm.loss(x0, x0.new_zeros(len(x0), 1), generator).detach())
    t = torch.linspace(1e-3, 1, 100_001, dtype=torch.float64)[:, None]
    alpha2 = SCHEDULE.alpha(t) ** 2
    expected = float(torch.trapezoid((alpha2 * STD**2 / (alpha2 * STD**2 + SCHEDULE.sigma(t) ** 2)).sum(-1),
                                     t[:, 0]) / (1 - 1e-3))
    print(f"BDM loss of the exact energy: measured {measured:.4f}, closed form {expected:.4f}")
    assert measured == pytest.approx(expected, rel=0.01)


def test_sampling_through_the_energy_follows_the_exact_flow():
    bdm = ContinuousVP(GaussianEnergy(), SCHEDULE, 2, prediction="energy")
    cond = torch.zeros(5000, 1, dtype=torch.float64)
    samples = bdm.sample(cond, torch.Generator().manual_seed(3), nfe=40, order=2)
    x_1 = torch.randn(5000, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v_1, v_end = (SCHEDULE.alpha(t) ** 2 * STD**2 + SCHEDULE.sigma(t) ** 2 for t in (1.0, 1e-3))
    exact = SCHEDULE.alpha(1e-3) * MEAN + (v_end / v_1).sqrt() * (x_1 - SCHEDULE.alpha(1.0) * MEAN)
    assert float((samples - exact).abs().max()) < 0.03
    assert not samples.requires_grad


class GaussianNoise(nn.Module):
    """ε̂(x | t) = −σ_t ∇_x f = σ_t (x − α_t m) / v_t: the exact noise prediction of the same data."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        alpha, sigma = SCHEDULE.alpha(t)[:, None], SCHEDULE.sigma(t)[:, None]
        return sigma * (x - alpha * MEAN) / (alpha**2 * STD**2 + sigma**2)


def test_a_noise_backbone_on_the_same_process_gives_what_the_energy_gives():
    energy = ContinuousVP(GaussianEnergy(), SCHEDULE, 2, prediction="energy")
    noise = ContinuousVP(GaussianNoise(), SCHEDULE, 2)
    x0, cond = MEAN + STD * torch.randn(256, 2, dtype=torch.float64), torch.zeros(256, 1, dtype=torch.float64)
    losses = [p.loss(x0, cond, torch.Generator().manual_seed(1)) for p in (energy, noise)]
    torch.testing.assert_close(losses[0].detach(), losses[1])
    samples = [p.sample(cond, torch.Generator().manual_seed(2), nfe=10, order=2) for p in (energy, noise)]
    torch.testing.assert_close(samples[0], samples[1])
    with pytest.raises(ValueError, match="unknown prediction"):
        ContinuousVP(GaussianNoise(), SCHEDULE, 2, prediction="score")  # type: ignore[arg-type]


def test_energy_mlp_layout():
    d4rl = EnergyMLP(obs_dim=11, act_dim=3)  # hopper: the release's 1,648,579 used parameters (no dead ones here)
    assert sum(p.numel() for p in d4rl.parameters()) == 1_646_368 + 385 * 3 + 96 * 11
    assert (d4rl.action.out_features, d4rl.state.out_features) == (128, 96)
    toy = EnergyMLP(obs_dim=0, act_dim=2)  # the paper's 2-D toy model: no state input, action → 224
    assert toy.state is None and toy.action.out_features == 224
    with pytest.raises(ValueError, match="no room"):
        EnergyMLP(obs_dim=4, act_dim=2, hidden=32, time_dim=32)
