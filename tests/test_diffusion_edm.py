"""EDM preconditioning, σ density and loss against closed forms; DTQL's score network."""

from __future__ import annotations

import math

import pytest
import torch

from offdiff.diffusion import EDM, EDMSchedule, ScoreMLP
from offdiff.nets import frozen

K = EDMSchedule()  # σ_d = 0.5, σ ∈ [0.002, 80], ln σ ~ Logistic(ln 0.5, 0.5)


def _denoiser(clip: float | None = None, seed: int = 0) -> EDM:
    torch.manual_seed(seed)
    return EDM(ScoreMLP(obs_dim=4, act_dim=3, hidden=32), K, 3, clip).double()


def test_preconditioning_closed_forms_and_identities():
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    sd = K.sigma_data
    # at σ = σ_d: c_skip = ½, c_out = σ_d/√2, c_in = 1/(σ_d√2), c_noise = ln(σ_d)/4
    at = torch.tensor(sd, dtype=torch.float64)
    assert float(K.c_skip(at)) == pytest.approx(0.5)
    assert float(K.c_out(at)) == pytest.approx(sd / math.sqrt(2))
    assert float(K.c_in(at)) == pytest.approx(1 / (sd * math.sqrt(2)))
    assert float(K.c_noise(at)) == pytest.approx(math.log(sd) / 4)
    # unit-variance network input and training target for data of std σ_d (the EDM design)
    torch.testing.assert_close(K.c_in(sigma) ** 2 * (sigma**2 + sd**2), torch.ones_like(sigma))
    torch.testing.assert_close((1 - K.c_skip(sigma)) ** 2 * sd**2 + K.c_skip(sigma) ** 2 * sigma**2,
                               K.c_out(sigma) ** 2)
    # the implied x-space weight 1/c_out² is EDM's λ(σ) = (σ² + σ_d²) / (σ σ_d)²
    torch.testing.assert_close(1 / K.c_out(sigma) ** 2, (sigma**2 + sd**2) / (sigma * sd) ** 2)
    # D → identity as σ → 0
    assert float(K.c_skip(sigma[0])) == pytest.approx(1, abs=1e-4) and float(K.c_out(sigma[0])) < 1e-3


def test_sigma_density_quantiles_and_truncation():
    quantiles = K.sigma_quantile(torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64))
    assert quantiles.tolist() == pytest.approx([0.11, 0.29, 0.50, 0.87, 2.18], abs=0.006)  # the spec's values
    assert K.cdf(K.sigma_min) == pytest.approx(1.6e-5, rel=0.05)
    assert 1 - K.cdf(K.sigma_max) == pytest.approx(4e-5, rel=0.1)
    ends = K.sigma_quantile(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ends.tolist() == pytest.approx([K.sigma_min, K.sigma_max], rel=1e-6)
    sigma = K.sample_sigma(200_000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert sigma.shape == (200_000, 1)
    assert K.sigma_min <= float(sigma.min()) and float(sigma.max()) <= K.sigma_max
    empirical = torch.quantile(sigma.double().squeeze(1), torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))
    assert empirical.tolist() == pytest.approx([0.1147, 0.5, 2.18], rel=0.02)


def test_f_space_loss_is_the_weighted_x_space_loss_when_nothing_is_clamped():
    torch.manual_seed(1)
    x, cond = torch.rand(64, 3, dtype=torch.float64) * 2 - 1, torch.randn(64, 4, dtype=torch.float64)
    sigma = K.sample_sigma(64, torch.Generator().manual_seed(2), torch.device("cpu")).double()
    noise = torch.randn(64, 3, dtype=torch.float64)
    plain = _denoiser()
    loss = plain.loss_at(x, sigma, noise, cond)
    x_noisy = x + sigma * noise
    weight = (sigma**2 + K.sigma_data**2) / (sigma * K.sigma_data) ** 2
    torch.testing.assert_close(loss, (weight * (plain(x_noisy, sigma, cond) - x) ** 2).mean())
    f = plain.net(K.c_in(sigma) * x_noisy, K.c_noise(sigma).squeeze(1), cond)
    torch.testing.assert_close(loss, ((f - (x - K.c_skip(sigma) * x_noisy) / K.c_out(sigma)) ** 2).mean())
    # a clamp that never binds changes nothing; one that binds does
    torch.testing.assert_close(_denoiser(clip=1e6).loss_at(x, sigma, noise, cond), loss)
    assert not torch.allclose(_denoiser(clip=0.1).loss_at(x, sigma, noise, cond), loss)


def test_loss_draws_sigma_then_noise_from_the_generator():
    d = _denoiser()
    x, cond = torch.rand(16, 3, dtype=torch.float64), torch.randn(16, 4, dtype=torch.float64)
    loss = d.loss(x, cond, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    sigma = K.sample_sigma(16, gen, torch.device("cpu")).double()
    noise = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(loss, d.loss_at(x, sigma, noise, cond))


def test_trust_region_gradient_reaches_the_action_through_both_paths_and_not_phi():
    d = _denoiser(clip=1.0)
    cond = torch.randn(32, 4, dtype=torch.float64)
    action = (torch.rand(32, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    with frozen(d):  # DTQL's L_TR: the EDM loss at the action with φ frozen
        d.loss(action, cond, torch.Generator().manual_seed(7)).backward()
    assert all(p.grad is None for p in d.parameters()), "φ gets no gradient from L_TR"
    assert all(p.requires_grad for p in d.parameters()), "φ is trainable again afterwards"

    def by_path(noisy_input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(7)
        sigma = K.sample_sigma(32, gen, torch.device("cpu")).double()
        noise = torch.randn(32, 3, generator=gen, dtype=torch.float64)
        loss = ((d(noisy_input + sigma * noise, sigma, cond) - target) / K.c_out(sigma)).square().mean()
        (grad,) = torch.autograd.grad(loss, action)
        return grad

    through_input, through_target = by_path(action, action.detach()), by_path(action.detach(), action)
    assert through_input.abs().sum() > 0 and through_target.abs().sum() > 0
    torch.testing.assert_close(action.grad, through_input + through_target)


def test_score_network_layout_has_no_activation_after_the_first_linear():
    net = ScoreMLP(obs_dim=5, act_dim=3, hidden=32, num_layers=4, time_dim=16)
    layers = list(net.net)
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ["Linear", "Linear", "Mish", "Linear", "Mish", "Linear", "Mish", "Linear"]
    assert layers[0].in_features == 3 + 5 + 16 and layers[-1].out_features == 3
    out = net(torch.randn(7, 3), torch.randn(7), torch.randn(7, 5))
    assert out.shape == (7, 3)
    time = list(net.time_embedding)  # sinusoid(16) → Linear(16, 32) → Mish → Linear(32, 16)
    assert (time[1].in_features, time[1].out_features, time[3].out_features) == (16, 32, 16)
    assert torch.allclose(time[0].freqs, torch.exp(-torch.arange(8) * math.log(1e4) / 7))


class _ExactGaussianNet(torch.nn.Module):
    """F making the preconditioned EDM denoiser the exact one of data N(mu, s^2): D = mu + s^2 (x - mu)/(s^2 + σ^2)."""

    def __init__(self, schedule, mu: float, s: float):
        super().__init__()
        self.k, self.mu, self.s = schedule, mu, s

    def forward(self, scaled: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        sigma = torch.exp(4 * noise).unsqueeze(-1)
        x = scaled / self.k.c_in(sigma)
        exact = self.mu + self.s**2 / (self.s**2 + sigma**2) * (x - self.mu)
        return (exact - self.k.c_skip(sigma) * x) / self.k.c_out(sigma)


def test_edm_samplers_draw_the_data_distribution_under_the_exact_denoiser():
    schedule = EDMSchedule(sigma_data=0.5, sigma_min=0.002, sigma_max=80.0)
    model = EDM(_ExactGaussianNet(schedule, mu=0.3, s=0.2), schedule, 2).double()
    cond = torch.zeros(20_000, 1, dtype=torch.float64)
    stds = {}
    for steps in (18, 200):  # Heun's discretization error shrinks with the steps (18: EDM's and the diagnostic's)
        samples = model.sample(cond, torch.Generator().manual_seed(0), steps=steps)
        assert samples.shape == (20_000, 2) and samples.mean().item() == pytest.approx(0.3, abs=0.01)
        stds[steps] = samples.std().item()
    assert stds[200] == pytest.approx(0.2, rel=0.02) and stds[18] == pytest.approx(0.2, rel=0.1)
    assert abs(stds[200] - 0.2) < abs(stds[18] - 0.2)
    assert torch.equal(model.sample(cond[:50], torch.Generator().manual_seed(3)),
                       model.sample(cond[:50], torch.Generator().manual_seed(3)))
    # Euler (first order, no correction) is further off than Heun at 18 levels and gets closer with more
    euler = {steps: model.sample(cond, torch.Generator().manual_seed(0), solver="euler", steps=steps).std().item()
             for steps in (18, 200)}
    assert abs(euler[18] - 0.2) > abs(stds[18] - 0.2) and abs(euler[200] - 0.2) < abs(euler[18] - 0.2)
    with pytest.raises(ValueError, match="unknown EDM solver"):
        model.sample(cond[:5], torch.Generator(), solver="ddim")
