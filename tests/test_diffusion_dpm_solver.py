"""The continuous-time VP schedule and DPM-Solver++ against closed forms.

For data N(m, s²) (per dimension) the diffused marginal is N(α_t m, v_t), v_t = α_t² s² + σ_t², the exact data
prediction is x̂₀ = m + α_t s²/v_t·(x_t − α_t m), and the probability-flow ODE maps x_1 to
x_t = α_t m + √(v_t / v_1)·(x_1 − α_1 m), so every solver sample can be compared with its exact endpoint.
"""

import pytest
import torch

from offdiff.diffusion import ContinuousVPSchedule, dpm_solver_sample, singlestep_orders

SCHEDULE = ContinuousVPSchedule(beta_0=0.1, beta_1=20.0, t_eps=1e-3)
MEAN = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64)
STD = torch.tensor([0.3, 0.5, 1.0], dtype=torch.float64)


def _variance(t: float) -> torch.Tensor:
    return SCHEDULE.alpha(t) ** 2 * STD**2 + SCHEDULE.sigma(t) ** 2


def gaussian_x0(x: torch.Tensor, t: float) -> torch.Tensor:
    alpha = SCHEDULE.alpha(t)
    return MEAN + alpha * STD**2 / _variance(t) * (x - alpha * MEAN)


def exact_flow(x_1: torch.Tensor, t_end: float = 1e-3) -> torch.Tensor:
    gain = (_variance(t_end) / _variance(1.0)).sqrt()
    return SCHEDULE.alpha(t_end) * MEAN + gain * (x_1 - SCHEDULE.alpha(1.0) * MEAN)


@pytest.fixture(scope="module")
def x_1() -> torch.Tensor:
    return torch.randn(20_000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_schedule_identities_and_values():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    alpha, sigma = SCHEDULE.alpha(t), SCHEDULE.sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t), rtol=0, atol=1e-12)
    # d log α/dt = −β(t)/2, the VP SDE's drift coefficient
    h = 1e-6
    slope = (SCHEDULE.log_alpha(t[1:-1] + h) - SCHEDULE.log_alpha(t[1:-1] - h)) / (2 * h)
    torch.testing.assert_close(slope, -SCHEDULE.beta(t[1:-1]) / 2, rtol=1e-7, atol=1e-7)
    lam = SCHEDULE.lam(t[1:])
    assert (lam[1:] < lam[:-1]).all(), "λ_t must decrease in t"
    torch.testing.assert_close(lam, (alpha[1:] / sigma[1:]).log())
    # the values the spec measured on the release: t=1 → α 0.00657, σ 0.99998; t=1e-3 → α 0.99995, σ 0.01049
    assert float(SCHEDULE.alpha(1.0)) == pytest.approx(0.00657, abs=5e-6)
    assert float(SCHEDULE.sigma(1.0)) == pytest.approx(0.99998, abs=5e-6)
    assert float(SCHEDULE.alpha(1e-3)) == pytest.approx(0.99995, abs=5e-6)
    assert float(SCHEDULE.sigma(1e-3)) == pytest.approx(0.01049, abs=5e-6)
    # σ stays accurate in float32 near t = 0 (no 1 − α² cancellation)
    small = torch.tensor([1e-3, 1e-4])
    torch.testing.assert_close(SCHEDULE.sigma(small).double(), SCHEDULE.sigma(small.double()), rtol=1e-5, atol=0)


def test_perturb_and_training_times():
    generator = torch.Generator().manual_seed(0)
    t = SCHEDULE.sample_time(100_000, generator, "cpu")
    assert t.min() >= 1e-3 and t.max() < 1 and float(t.mean()) == pytest.approx(0.5005, abs=5e-3)
    x0, noise = torch.randn(4, 16, 3), torch.randn(4, 16, 3)
    times = torch.tensor([0.001, 0.2, 0.5, 1.0])
    out = SCHEDULE.perturb(x0, times, noise)  # one t per row, shared by its 16 × 3 entries
    for i, ti in enumerate(times):
        torch.testing.assert_close(out[i], SCHEDULE.alpha(ti) * x0[i] + SCHEDULE.sigma(ti) * noise[i])


def test_step_orders_and_grid_follow_the_release():
    assert singlestep_orders(15, 2) == [2] * 7 + [1]
    assert singlestep_orders(10, 2) == [2] * 5 and singlestep_orders(4, 1) == [1] * 4
    calls: list[float] = []

    def record(x: torch.Tensor, t: float) -> torch.Tensor:
        calls.append(t)
        return gaussian_x0(x, t)

    dpm_solver_sample(record, torch.zeros(2, 3, dtype=torch.float64), SCHEDULE, 1.0, 1e-3, nfe=15, order=2)
    grid = torch.linspace(1.0, 1e-3, 16, dtype=torch.float64).tolist()
    assert calls == pytest.approx(grid[:15]), "2nd-order steps evaluate at s and the middle grid point"
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        singlestep_orders(15, 3)


def test_dpm_solver_converges_to_the_exact_flow(x_1):
    def error(nfe: int, order: int) -> float:
        sample = dpm_solver_sample(gaussian_x0, x_1, SCHEDULE, 1.0, 1e-3, nfe, order)
        return float((sample - exact_flow(x_1)).abs().max())

    first = [error(n, 1) for n in (20, 40, 80)]
    second = [error(n, 2) for n in (20, 40, 80)]
    print(f"max |x − exact| at 20/40/80 NFE: order 1 {first}, order 2 {second}")
    assert first[0] > first[1] > first[2] and first[1] / first[2] > 1.6  # first order: error ∝ step
    assert second[0] > second[1] > second[2]
    assert second[1] < first[1] / 5 and second[2] < 0.01


def test_dpm_solver_lands_on_the_data_distribution(x_1):
    exact = exact_flow(x_1)
    target_mean, target_std = exact.mean(0), exact.std(0)
    fine = dpm_solver_sample(gaussian_x0, x_1, SCHEDULE, 1.0, 1e-3, nfe=40, order=2)
    torch.testing.assert_close(fine.mean(0), target_mean, rtol=0, atol=5e-3)
    torch.testing.assert_close(fine.std(0), target_std, rtol=0.02, atol=0)
    # EDA's setting: its last step is 1st order from t ≈ 0.068 to 1e-3, which narrows tight modes (s = 0.3
    # comes out about 20 % too narrow) while the mean stays right.
    release = dpm_solver_sample(gaussian_x0, x_1, SCHEDULE, 1.0, 1e-3, nfe=15, order=2)
    print(f"15-NFE order-2 std {release.std(0).tolist()} vs exact {target_std.tolist()}")
    torch.testing.assert_close(release.mean(0), target_mean, rtol=0, atol=1e-2)
    torch.testing.assert_close(release.std(0), target_std, rtol=0.25, atol=0)
