"""Discrete VP diffusion (Diffusion-QL): schedule values, posterior, loss and the ancestral sampler.

The sampler is checked on Gaussian data N(m, s²), whose optimal noise prediction is known in closed form:
ε̂*(x_t, t) = √(1−ᾱ_t)·(x_t − √ᾱ_t·m) / (ᾱ_t·s² + 1 − ᾱ_t). With it every sampler step is affine in x,
so the output's mean and variance follow a scalar recursion computed here independently.
"""

import math

import pytest
import torch
from torch import nn

from offdiff.diffusion import DiscreteVP, DiscreteVPSchedule, NoisePredictionMLP, vp_betas

N = 5


@pytest.fixture
def schedule():
    return DiscreteVPSchedule(N, beta_min=0.1, beta_max=10.0)


class GaussianOracle(nn.Module):
    """The exact ε-prediction for data N(m, diag(s²)); m is a parameter so gradients can be checked.

    With `grad_step` set, m carries gradient only in the network call at that step.
    """

    def __init__(
        self, schedule: DiscreteVPSchedule, m: torch.Tensor, s: torch.Tensor, grad_step: int | None = None
    ):
        super().__init__()
        self.schedule, self.m, self.s, self.grad_step = schedule, nn.Parameter(m.clone()), s, grad_step

    def forward(self, x_t, t, cond):
        m = self.m if self.grad_step in (None, int(t[0])) else self.m.detach()
        ab = self.schedule.alphas_cumprod[t][:, None]
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * m) / (ab * self.s**2 + 1 - ab)


def analytic_sampler_moments(m: torch.Tensor, s: torch.Tensor):
    """Mean and variance of the unclipped sampler's output by the affine recursion, in float64, and
    d x_0/d m split by the step t whose network call m enters through (row t)."""
    betas = vp_betas(N, 0.1, 10.0)
    alphas = 1 - betas
    ab = torch.cumprod(alphas, 0)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    s2 = s.double() ** 2
    mean_gain = torch.zeros_like(s2)  # mean_t = mean_gain·m (x_N has mean 0)
    var = torch.ones_like(s2)
    slopes, offsets = torch.zeros(N, len(s)).double(), torch.zeros(N, len(s)).double()
    for t in reversed(range(N)):
        k = (1 - ab[t]).sqrt() / (ab[t] * s2 + 1 - ab[t])  # ε̂ = k·(x − √ᾱ·m)
        slope_x0 = 1 / ab[t].sqrt() - (1 / ab[t] - 1).sqrt() * k  # x̂0 = slope_x0·x + offset_x0·m
        offset_x0 = (1 / ab[t] - 1).sqrt() * k * ab[t].sqrt()
        c1 = betas[t] * ab_prev[t].sqrt() / (1 - ab[t])
        c2 = (1 - ab_prev[t]) * alphas[t].sqrt() / (1 - ab[t])
        slopes[t], offsets[t] = c1 * slope_x0 + c2, c1 * offset_x0  # x_{t−1} = slope·x_t + offset·m + noise
        mean_gain = slopes[t] * mean_gain + offsets[t]
        var = slopes[t] ** 2 * var + betas[t] * (1 - ab_prev[t]) / (1 - ab[t])
    later_slopes = torch.cat([torch.ones(1, len(s)).double(), torch.cumprod(slopes, 0)[:-1]])
    return mean_gain * m.double(), var, offsets * later_slopes


def test_schedule_matches_spec_table(schedule):
    table = torch.tensor(
        [  # β, ᾱ, √ᾱ, √(1−ᾱ), posterior std  (dtql_dql.md B3)
            [0.1959, 0.8041, 0.8967, 0.4426, 0.0],
            [0.4588, 0.4352, 0.6597, 0.7515, 0.3989],
            [0.6358, 0.1585, 0.3981, 0.9173, 0.6533],
            [0.7549, 0.0389, 0.1971, 0.9804, 0.8130],
            [0.8350, 0.0064, 0.0801, 0.9968, 0.8988],
        ]
    )
    ours = torch.stack(
        [
            schedule.betas,
            schedule.alphas_cumprod,
            schedule.sqrt_alphas_cumprod,
            schedule.sqrt_one_minus_alphas_cumprod,
            schedule.posterior_variance.sqrt(),
        ],
        dim=1,
    )
    torch.testing.assert_close(ours, table, atol=1e-4, rtol=0)
    torch.testing.assert_close(schedule.posterior_std[1:], schedule.posterior_variance[1:].sqrt())
    torch.testing.assert_close(
        schedule.posterior_log_variance_clipped, schedule.posterior_variance.clamp(min=1e-20).log()
    )
    torch.testing.assert_close(schedule.sqrt_recip_alphas_cumprod, schedule.alphas_cumprod.rsqrt())
    torch.testing.assert_close(schedule.sqrt_recipm1_alphas_cumprod, (1 / schedule.alphas_cumprod - 1).sqrt())


def test_posterior_is_gaussian_conditioning(schedule):
    """q(x_{t−1} | x_t, x_0) from the joint Gaussian of (x_{t−1}, x_t) given x_0."""
    x0, x_t = torch.randn(N, 3).double(), torch.randn(N, 3).double()
    t = torch.arange(N)
    sched = schedule.double()
    ab, alpha = sched.alphas_cumprod[:, None], sched.alphas[:, None]
    ab_prev = sched.alphas_cumprod_prev[:, None]
    cov = alpha.sqrt() * (1 - ab_prev)  # Cov(x_{t−1}, x_t | x_0)
    mean = ab_prev.sqrt() * x0 + cov / (1 - ab) * (x_t - ab.sqrt() * x0)
    var = (1 - ab_prev) - cov**2 / (1 - ab)
    torch.testing.assert_close(sched.posterior_mean(x0, x_t, t), mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sched.posterior_variance, var[:, 0], atol=1e-6, rtol=1e-6)
    assert sched.posterior_variance[0] == 0


def test_q_sample_marginals(schedule):
    """q_sample equals composing the one-step kernels N(√α_i·x, β_i) from x_0."""
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0.7, -0.4])
    n = 100_000
    x = x0.expand(n, 2)
    for t in range(N):
        x = schedule.alphas[t].sqrt() * x + schedule.betas[t].sqrt() * torch.randn(n, 2, generator=gen)
        direct = schedule.q_sample(x0.expand(n, 2), torch.full((n,), t), torch.randn(n, 2, generator=gen))
        for sample in (x, direct):
            torch.testing.assert_close(
                sample.mean(0), schedule.sqrt_alphas_cumprod[t] * x0, atol=0.01, rtol=0
            )
            torch.testing.assert_close(
                sample.var(0), (1 - schedule.alphas_cumprod[t]).expand(2), atol=0.01, rtol=0
            )
    noise = torch.randn(4, 2)
    t = torch.tensor([0, 1, 3, 4])
    expected = (
        schedule.sqrt_alphas_cumprod[t, None] * x0 + schedule.sqrt_one_minus_alphas_cumprod[t, None] * noise
    )
    torch.testing.assert_close(schedule.q_sample(x0.expand(4, 2), t, noise), expected)
    torch.testing.assert_close(schedule.predict_x0(expected, t, noise), x0.expand(4, 2), atol=1e-5, rtol=0)


def test_loss_zero_for_exact_noise_of_point_mass(schedule):
    m = torch.tensor([0.3, -0.6])
    oracle = GaussianOracle(schedule, m, torch.zeros(2))
    x0, cond = m.expand(64, 2), torch.zeros(64, 1)
    gen = torch.Generator().manual_seed(0)
    assert DiscreteVP(oracle, schedule, 2).loss(x0, cond, gen) < 1e-10
    assert DiscreteVP(lambda x, t, c: torch.zeros_like(x), schedule, 2).loss(x0, cond, gen) > 0.5  # mean ε² ≈ 1
    off = GaussianOracle(schedule, m + 0.1, torch.zeros(2))
    assert DiscreteVP(off, schedule, 2).loss(x0, cond, gen) > 1e-3


def test_loss_is_deterministic_under_generator(schedule):
    net = NoisePredictionMLP(3, 2, hidden=16)
    x0, cond = torch.rand(32, 2), torch.randn(32, 3)
    losses = [DiscreteVP(net, schedule, 2).loss(x0, cond, torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(losses[0], losses[1])


def test_sampler_returns_point_mass_exactly(schedule):
    m = torch.tensor([0.3, -0.6])
    oracle = GaussianOracle(schedule, m, torch.zeros(2))
    with torch.no_grad():
        out = DiscreteVP(oracle, schedule, 2).sample(torch.zeros(256, 1), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, m.expand(256, 2), atol=1e-6, rtol=0)


def test_sampler_moments_match_closed_form_recursion(schedule):
    m, s = torch.tensor([0.3, -0.5]), torch.tensor([0.2, 0.6])
    oracle = GaussianOracle(schedule, m, s)
    n = 200_000
    with torch.no_grad():
        out = DiscreteVP(oracle, schedule, 2, clip=None).sample(torch.zeros(n, 1), torch.Generator().manual_seed(0))
    mean, var, _ = analytic_sampler_moments(m, s)
    torch.testing.assert_close(out.mean(0).double(), mean, atol=5 * math.sqrt(0.36 / n), rtol=0)
    torch.testing.assert_close(out.var(0).double(), var, atol=0, rtol=0.02)
    torch.testing.assert_close(mean, m.double(), atol=0.01, rtol=0)  # the sampler is nearly unbiased
    assert not torch.allclose(var, s.double() ** 2, rtol=0.02)  # but 5 steps do not reproduce s²


def test_gradient_flows_through_whole_chain(schedule):
    """Unclipped, x_0 is affine in m: its slope sums what m contributes at each of the N network calls."""
    m, s = torch.tensor([0.3, -0.5]), torch.tensor([0.2, 0.6])
    batch = 64
    _, _, per_step = analytic_sampler_moments(m, s)
    torch.testing.assert_close(per_step.sum(0), analytic_sampler_moments(m, s)[0] / m.double())
    for grad_step in (None, N - 1):  # all steps; only the first call, N − 1 calls before the output
        oracle = GaussianOracle(schedule, m, s, grad_step)
        out = DiscreteVP(oracle, schedule, 2, clip=None).sample(torch.zeros(batch, 1), torch.Generator().manual_seed(0))
        out.sum().backward()
        expected = per_step.sum(0) if grad_step is None else per_step[grad_step]
        assert expected.abs().min() > 1e-3
        torch.testing.assert_close(oracle.m.grad.double(), batch * expected, atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        out = DiscreteVP(oracle, schedule, 2).sample(torch.zeros(batch, 1), torch.Generator().manual_seed(0))
    assert not out.requires_grad


def test_sampler_with_network_backpropagates_to_all_parameters(schedule):
    net = NoisePredictionMLP(3, 2, hidden=16)
    cond = torch.randn(8, 3)
    actions = DiscreteVP(net, schedule, 2).sample(cond, torch.Generator().manual_seed(0))
    assert actions.shape == (8, 2) and actions.abs().max() <= 1
    actions.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_sampler_deterministic_for_fixed_generator(schedule):
    net = NoisePredictionMLP(3, 2, hidden=16)
    cond = torch.randn(8, 3)
    with torch.no_grad():
        a, b, c = (DiscreteVP(net, schedule, 2).sample(cond, torch.Generator().manual_seed(seed)) for seed in (3, 3, 4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_other_beta_schedules():
    linear = DiscreteVPSchedule(50, kind="linear")
    torch.testing.assert_close(linear.betas[[0, -1]], torch.tensor([1e-4, 2e-2]))
    cosine = DiscreteVPSchedule(50, kind="cosine")
    assert (cosine.betas > 0).all() and (cosine.betas <= 0.999).all()
    assert cosine.alphas_cumprod[-1] < 1e-3
    with pytest.raises(ValueError):
        DiscreteVPSchedule(5, kind="quadratic")


class RealIndexGaussianOracle(nn.Module):
    """The exact ε-prediction for data N(m, diag(s²)) at a real step index t of the schedule's extension."""

    def __init__(self, schedule: DiscreteVPSchedule, m: torch.Tensor, s: torch.Tensor):
        super().__init__()
        self.schedule, self.m, self.s = schedule, m, s

    def forward(self, x_t, t, cond):
        alpha, sigma = (f(t.double()).float()[:, None] for f in (self.schedule.alpha, self.schedule.sigma))
        return sigma * (x_t - alpha * self.m) / (alpha**2 * self.s**2 + sigma**2)


def test_real_index_extension_matches_the_table_at_the_steps_and_interpolates_between(schedule):
    steps = torch.arange(N, dtype=torch.float64)
    torch.testing.assert_close(schedule.alpha(steps).square().float(), schedule.alphas_cumprod)
    torch.testing.assert_close(schedule.sigma(steps).square().float(), 1 - schedule.alphas_cumprod)
    half = schedule.log_alpha(torch.tensor([1.5], dtype=torch.float64))
    torch.testing.assert_close(half, schedule.log_alpha(steps[1:3]).mean().reshape(1))
    assert (schedule.lam(steps).diff() < 0).all()  # λ decreases with t


def test_dpm_solver_follows_the_exact_flow_of_gaussian_data(schedule):
    """Along the exact probability flow ξ = (x_t − α_t m)/√(α_t² s² + σ_t²) is constant; then x̂₀ at t = 0 is
    m + α₀ s² ξ / √(α₀² s² + σ₀²). DPM-Solver converges to it, order 2 as the square of the step."""
    m, s = torch.tensor([0.3, -0.5]), torch.tensor([0.2, 0.6])
    process = DiscreteVP(RealIndexGaussianOracle(schedule, m, s), schedule, 2, clip=None)
    cond = torch.zeros(512, 1)
    x_start = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))  # the solver's first draw
    alpha_T, sigma_T = float(schedule.alpha(N - 1.0)), float(schedule.sigma(N - 1.0))
    alpha_0, sigma_0 = float(schedule.alpha(0.0)), float(schedule.sigma(0.0))
    xi = (x_start - alpha_T * m) / (alpha_T**2 * s**2 + sigma_T**2).sqrt()
    exact = m + alpha_0 * s**2 * xi / (alpha_0**2 * s**2 + sigma_0**2).sqrt()

    def error(nfe: int, order: int) -> float:
        out = process.sample(cond, torch.Generator().manual_seed(0), solver="dpm_solver", nfe=nfe, order=order)
        return float((out - exact).abs().max())

    assert error(100, 2) < 1e-3
    assert error(40, 2) / error(100, 2) > 4  # 2.5× the steps: ≈ 2.5² less error at order 2 (measured 5.8)
    assert error(4, 2) < error(4, 1)


def test_dpm_solver_returns_point_mass_exactly_and_backpropagates(schedule):
    m = torch.tensor([0.3, -0.6])
    out = DiscreteVP(RealIndexGaussianOracle(schedule, m, torch.zeros(2)), schedule, 2).sample(
        torch.zeros(64, 1), torch.Generator().manual_seed(0), solver="dpm_solver", nfe=4)
    torch.testing.assert_close(out, m.expand(64, 2), atol=1e-6, rtol=0)
    torch.manual_seed(0)
    net, cond, solver = NoisePredictionMLP(3, 2, hidden=16), torch.randn(8, 3), {"solver": "dpm_solver", "nfe": 3}
    clipped = DiscreteVP(net, schedule, 2).sample(cond, torch.Generator().manual_seed(0), **solver)
    assert clipped.shape == (8, 2) and clipped.abs().max() <= 1
    actions = DiscreteVP(net, schedule, 2, clip=None).sample(cond, torch.Generator().manual_seed(0), **solver)
    actions.square().sum().backward()  # unclipped: no clamp saturates, every parameter gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_unknown_solver_and_too_short_schedule_are_errors(schedule):
    net = NoisePredictionMLP(3, 2, hidden=16)
    with pytest.raises(ValueError, match="unknown discrete VP solver"):
        DiscreteVP(net, schedule, 2).sample(torch.zeros(2, 3), torch.Generator(), solver="ddim")
    with pytest.raises(ValueError, match="at least 2 steps"):
        DiscreteVP(net, DiscreteVPSchedule(1), 2).sample(torch.zeros(2, 3), torch.Generator(), solver="dpm_solver")
