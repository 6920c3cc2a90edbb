"""Critics: independent Q heads, frozen Polyak target, TD target and the expectile loss."""

import torch

from offdiff.critics import DoubleQ, ValueNet, expectile_loss, td_target

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
