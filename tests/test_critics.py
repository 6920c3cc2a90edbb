"""Critics: independent Q heads, frozen Polyak target, TD target and the expectile loss."""

import torch

from offdiff.critics import DoubleQ, IQLCritic, ValueNet, expectile_loss, td_target
from offdiff.data.buffer import Batch

S, A, B = 5, 2, 9


def test_double_q_shapes_and_head_independence():
    critic = DoubleQ(S, A, hidden=(16, 16), layer_norm=True)
    obs, act = torch.randn(B, S), torch.randn(B, A)
    q = critic(obs, act)
    assert q.shape == (2, B)
    q[0].sum().backward()
    for p in critic.online.parameters():
        assert p.grad[0].abs().sum() > 0
        assert torch.equal(p.grad[1], torch.zeros_like(p.grad[1]))


def test_double_q_input_order_is_obs_then_act():
    critic = DoubleQ(S, A, hidden=(8,))
    obs, act = torch.randn(B, S), torch.randn(B, A)
    torch.testing.assert_close(critic(obs, act), critic.online(torch.cat([obs, act], -1)).squeeze(-1))


def test_target_is_frozen_and_polyak_updated():
    critic = DoubleQ(S, A, hidden=(8, 8))
    obs, act = torch.randn(B, S), torch.randn(B, A)
    torch.testing.assert_close(critic.target_q(obs, act), critic(obs, act))
    assert all(not p.requires_grad for p in critic.target.parameters())
    assert not critic.target_q(obs, act).requires_grad
    assert "target.net.0.weight" in critic.state_dict()

    old_target = [p.clone() for p in critic.target.parameters()]
    with torch.no_grad():
        for p in critic.online.parameters():
            p.add_(torch.randn_like(p))
    critic.update_target(0.005)
    for p_t, p_old, p_on in zip(
        critic.target.parameters(), old_target, critic.online.parameters(), strict=True
    ):
        torch.testing.assert_close(p_t, 0.995 * p_old + 0.005 * p_on)


def test_td_target():
    reward = torch.tensor([1.0, -2.0, 0.5])
    not_done = torch.tensor([1.0, 0.0, 1.0])
    next_v = torch.tensor([10.0, 10.0, -4.0])
    torch.testing.assert_close(td_target(reward, not_done, next_v, 0.99), torch.tensor([10.9, -2.0, -3.46]))


def test_expectile_loss_hand_computed():
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])
    # τ = 0.7: weights 0.7, 0.3, 0.7, 0.3 → (0.7·4 + 0.3·1 + 0.7·0.25 + 0.3·9) / 4
    expected = (2.8 + 0.3 + 0.175 + 2.7) / 4
    torch.testing.assert_close(expectile_loss(diff, 0.7), torch.tensor(expected))
    torch.testing.assert_close(expectile_loss(diff, 0.5), 0.5 * diff.square().mean())


def test_value_net_shape():
    assert ValueNet(S, hidden=(8, 8))(torch.randn(B, S)).shape == (B,)


def _batch(n: int = 32) -> Batch:
    obs = torch.randn(n, S)
    return Batch(obs, torch.rand(n, A) * 2 - 1, torch.randn(n), torch.randn(n, S), (torch.rand(n) > 0.1).float(),
                 torch.arange(n))


def test_iql_critic_loss_matches_hand_computation():
    torch.manual_seed(0)
    critic = IQLCritic(S, A, hidden=(16, 16), value_from_target=False, q_loss_scale=0.5)
    with torch.no_grad():
        for p in critic.q.online.parameters():
            p.add_(0.1 * torch.randn_like(p))  # online ≠ target
    batch = _batch()
    loss, metrics = critic.loss(batch, expectile=0.7, discount=0.99)
    q_online = critic.q(batch.obs, batch.actions).detach()
    v = critic.v(batch.obs).detach()
    y = batch.rewards + 0.99 * batch.not_done * critic.v(batch.next_obs).detach()
    expected_v = expectile_loss(q_online.amin(0) - v, 0.7)
    expected_q = 0.5 * ((q_online[0] - y).pow(2).mean() + (q_online[1] - y).pow(2).mean())
    torch.testing.assert_close(loss, expected_v + expected_q)
    torch.testing.assert_close(metrics["value_loss"], expected_v)

    from_target = IQLCritic(S, A, hidden=(16, 16), value_from_target=True)
    from_target.load_state_dict(critic.state_dict())
    _, metrics_t = from_target.loss(batch, expectile=0.7, discount=0.99)
    expected_t = expectile_loss(critic.q.target_q(batch.obs, batch.actions).amin(0) - v, 0.7)
    torch.testing.assert_close(metrics_t["value_loss"], expected_t)
    assert not torch.allclose(expected_t, expected_v)


def test_iql_value_learns_the_expectile():
    """V(s) trained by the expectile loss converges to the τ-expectile of Q(s, a) = a over a ~ U(-1, 1)."""
    torch.manual_seed(0)
    critic = IQLCritic(1, 1, hidden=(32,), value_from_target=False)
    opt = torch.optim.Adam(critic.v.parameters(), lr=1e-2)
    obs = torch.zeros(256, 1)
    actions = torch.linspace(-1, 1, 256)[:, None]
    q_values = actions.squeeze(-1)  # Q(s, a) = a
    for _ in range(800):
        loss = expectile_loss(q_values - critic.v(obs), 0.9)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the 0.9-expectile m of U(-1, 1) solves 0.9·E[(a−m)+] = 0.1·E[(m−a)+]: 0.9(1−m)² = 0.1(1+m)²
    m = (3 - 1) / (3 + 1)  # sqrt(0.9)=3·sqrt(0.1) → 3(1−m) = (1+m) → m = 0.5
    assert abs(critic.v(obs[:1]).item() - m) < 0.03
