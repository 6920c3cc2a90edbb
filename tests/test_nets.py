"""Nets: vectorized ensembles equal per-member layers, embeddings, target updates, residual blocks, freezing, the
tanh-Gaussian policy, softmax choice, Mish (eager and its compile form) and row chunks."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from offdiff.nets import (
    EnsembleMLP,
    GaussianFourierFeatures,
    Mish,
    ResidualBlock,
    ResidualMLP,
    SinusoidalEmbedding,
    TanhGaussianPolicy,
    TimeEmbedding,
    VectorizedLayerNorm,
    VectorizedLinear,
    frozen,
    frozen_copy,
    hard_update_,
    in_row_chunks,
    mish,
    mish_one_exp,
    mlp,
    polyak_update_,
    rows_per_call,
    softmax_choice,
)

E, B = 3, 7


def _member_linear(layer: VectorizedLinear, j: int) -> nn.Linear:
    lin = nn.Linear(layer.weight.shape[1], layer.weight.shape[2])
    with torch.no_grad():
        lin.weight.copy_(layer.weight[j].T)
        lin.bias.copy_(layer.bias[j, 0])
    return lin


def _member_mlp(ens: EnsembleMLP, j: int) -> nn.Sequential:
    layers = []
    for layer in ens.net:
        if isinstance(layer, VectorizedLinear):
            layers.append(_member_linear(layer, j))
        elif isinstance(layer, VectorizedLayerNorm):
            ln = nn.LayerNorm(layer.weight.shape[-1], eps=layer.eps)
            with torch.no_grad():
                ln.weight.copy_(layer.weight[j, 0])
                ln.bias.copy_(layer.bias[j, 0])
            layers.append(ln)
        else:
            layers.append(layer)
    return nn.Sequential(*layers)


def test_vectorized_linear_equals_per_member_linear():
    layer = VectorizedLinear(E, 5, 4)
    x = torch.randn(E, B, 5)
    out = layer(x)
    assert out.shape == (E, B, 4)
    for j in range(E):
        torch.testing.assert_close(out[j], _member_linear(layer, j)(x[j]), atol=1e-6, rtol=0)


def test_vectorized_linear_init_bound():
    torch.manual_seed(0)
    fan_in = 64
    layer = VectorizedLinear(4, fan_in, 256)
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight, layer.bias):
        assert p.abs().max() <= bound
        assert p.abs().max() > 0.98 * bound  # uniform over the whole interval, not a narrower one
        assert abs(p.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    assert not torch.equal(layer.weight[0], layer.weight[1])  # members are independent draws


@pytest.mark.parametrize("layer_norm", [False, True])
def test_ensemble_mlp_equals_per_member_sequential(layer_norm):
    ens = EnsembleMLP(E, 6, (16, 8), 2, activation=nn.Mish, layer_norm=layer_norm)
    if layer_norm:  # non-trivial affine parameters so the per-member copy is really tested
        with torch.no_grad():
            for p in ens.parameters():
                p.add_(0.1 * torch.randn_like(p))
    shared = torch.randn(B, 6)
    per_member = torch.randn(E, B, 6)
    out_shared, out_member = ens(shared), ens(per_member)
    assert out_shared.shape == out_member.shape == (E, B, 2)
    for j in range(E):
        ref = _member_mlp(ens, j)
        torch.testing.assert_close(out_shared[j], ref(shared), atol=1e-6, rtol=0)
        torch.testing.assert_close(out_member[j], ref(per_member[j]), atol=1e-6, rtol=0)


def test_mlp_layout():
    net = mlp(4, (8, 8), 3, activation=nn.ReLU, layer_norm=True)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear]
    assert net(torch.randn(B, 4)).shape == (B, 3)


def test_sinusoidal_embedding_values():
    emb = SinusoidalEmbedding(8)
    t = torch.tensor([0.0, 1.0, 3.5])
    out = emb(t)
    assert out.shape == (3, 8)
    freqs = [math.exp(-k * math.log(1e4) / 3) for k in range(4)]
    expected = torch.tensor(
        [[math.sin(ti * f) for f in freqs] + [math.cos(ti * f) for f in freqs] for ti in t.tolist()]
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(emb(t[:, None]), out)


def test_time_embedding_shape():
    assert TimeEmbedding(16)(torch.arange(5).float()).shape == (5, 16)


def test_gaussian_fourier_features_state_dict_roundtrip():
    torch.manual_seed(0)
    ff = GaussianFourierFeatures(32, scale=30.0)
    assert "W" in ff.state_dict() and ff.W.shape == (16,)
    assert not ff.W.requires_grad and len(list(ff.parameters())) == 0
    torch.manual_seed(1)
    other = GaussianFourierFeatures(32, scale=30.0)
    assert not torch.equal(other.W, ff.W)
    other.load_state_dict(ff.state_dict())
    assert torch.equal(other.W, ff.W)
    t = torch.rand(5)
    torch.testing.assert_close(other(t), ff(t))
    args = 2 * math.pi * t[:, None] * ff.W
    torch.testing.assert_close(ff(t), torch.cat([args.sin(), args.cos()], -1))


def test_polyak_update_arithmetic():
    source, target = nn.BatchNorm1d(3), nn.BatchNorm1d(3)  # has parameters and buffers
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(torch.randn_like(p))
        source.running_mean.copy_(torch.randn(3))
        for p in target.parameters():
            p.copy_(torch.randn_like(p))
    tau = 0.25
    expected = [
        (1 - tau) * pt + tau * ps for pt, ps in zip(target.parameters(), source.parameters(), strict=True)
    ]
    polyak_update_(target, source, tau)
    for p, e in zip(target.parameters(), expected, strict=True):
        torch.testing.assert_close(p, e)
    assert torch.equal(target.running_mean, source.running_mean)


def test_hard_update_and_frozen_copy():
    source = mlp(3, (4,), 2)
    target = frozen_copy(source)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in source.parameters())
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    hard_update_(target, source)
    for pt, ps in zip(target.parameters(), source.parameters(), strict=True):
        assert torch.equal(pt, ps)


def test_residual_block_shape_and_dropout_only_on_branch():
    block = ResidualBlock(8, dropout=0.5)
    x = torch.randn(B, 8)
    assert block(x).shape == (B, 8)
    last = block.branch[-1]
    assert last.in_features == 32
    with torch.no_grad():  # a zero branch: the output is the skip alone, which must be the un-dropped x
        last.weight.zero_()
        last.bias.zero_()
    block.train()
    assert torch.equal(block(x), x)
    block_dropout = ResidualBlock(8, dropout=0.5).train()
    assert not torch.equal(block_dropout(x), block_dropout(x))
    block_dropout.eval()
    assert torch.equal(block_dropout(x), block_dropout(x))


def test_residual_mlp_shape():
    net = ResidualMLP(5, 16, num_blocks=3, out_dim=2, dropout=0.1)
    assert net(torch.randn(B, 5)).shape == (B, 2)
    assert sum(isinstance(m, ResidualBlock) for m in net) == 3


def test_frozen_restores_each_flag():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    net[1].weight.requires_grad_(False)
    with frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [True, True, False, True]


def test_tanh_gaussian_policy():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(obs_dim=4, act_dim=2, hidden=(16, 16, 16), max_action=1.0).double()
    for layer in policy.net:
        if isinstance(layer, nn.Linear):
            w = layer.weight
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=w.dtype), atol=1e-5, rtol=0)
            assert not layer.bias.any()
    obs = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():  # log σ is hard-clamped to [-5, 2]
        policy.net[-1].bias[2:] = 10.0
        assert torch.allclose(policy(obs).std, torch.full((5, 2), math.exp(2.0), dtype=torch.float64))
        policy.net[-1].bias[2:] = -10.0
        assert torch.allclose(policy(obs).std, torch.full((5, 2), math.exp(-5.0), dtype=torch.float64))
        policy.net[-1].bias[2:] = 0.0
    pi = policy(obs)
    a = pi.rsample(torch.Generator().manual_seed(1))
    assert a.shape == (5, 2) and a.abs().max() <= 1.0
    assert torch.equal(a, policy(obs).rsample(torch.Generator().manual_seed(1)))
    a.sum().backward()  # reparameterised: the sample is differentiable in θ
    assert policy.net[-1].bias.grad[:2].abs().sum() > 0
    data = torch.tensor([[0.3, -1.0]] * 5, dtype=torch.float64)  # |a| = 1 stays finite (atanh of 1/1.001)
    z = torch.atanh(data / 1.001)
    by_hand = (0.5 * ((z - pi.mean) / pi.std) ** 2 + pi.std.log() + 0.5 * math.log(2 * math.pi)).sum(1)
    torch.testing.assert_close(pi.nll(data), by_hand)
    assert abs(float(z[0, 1])) == pytest.approx(3.8, abs=0.01)


def test_softmax_choice_picks_by_softmax_of_the_logits():
    candidates = torch.arange(24, dtype=torch.float32).view(2, 4, 3)
    logits = torch.tensor([[0.0, 50.0, 0.0, 0.0], [0.0, 0.0, 0.0, 50.0]])
    picked = softmax_choice(candidates, logits, torch.Generator().manual_seed(0))
    assert torch.equal(picked, torch.stack([candidates[0, 1], candidates[1, 3]]))
    uniform = torch.stack([softmax_choice(candidates, torch.zeros(2, 4), torch.Generator().manual_seed(s))[0, 0]
                           for s in range(400)])
    counts = torch.bincount((uniform / 3).long(), minlength=4)
    assert counts.min() > 60  # about 100 each


@pytest.mark.parametrize("form", [mish, mish_one_exp], ids=["eager", "compile-form"])
def test_fast_mish_is_mish_with_its_gradients(form):
    x = torch.cat([torch.linspace(-100, 100, 20001), torch.tensor([-20.0, 20.0, 20.5, 0.0, 88.0, 1e4, -1e4])])
    torch.testing.assert_close(form(x), F.mish(x), rtol=2e-6, atol=2e-6)
    grad = x.clone().requires_grad_(True)
    (fast,) = torch.autograd.grad(form(grad).sum(), grad)
    (ref,) = torch.autograd.grad(F.mish(grad).sum(), grad)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    inner = torch.linspace(-15, 15, 3001, dtype=torch.float64, requires_grad=True)  # second derivative (float64)
    (fast,) = torch.autograd.grad(torch.autograd.grad(form(inner).sum(), inner, create_graph=True)[0].sum(), inner)
    (ref,) = torch.autograd.grad(torch.autograd.grad(F.mish(inner).sum(), inner, create_graph=True)[0].sum(), inner)
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)


def test_mish_module_backpropagates_through_the_fused_function():
    x = torch.randn(64, 32, requires_grad=True)
    y = Mish()(x)
    assert y.grad_fn is not None and "Mish" in type(y.grad_fn).__name__
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    (ref,) = torch.autograd.grad(F.mish(x).square().sum(), x)
    torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(Mish()(x), F.mish(x), rtol=2e-6, atol=2e-6)


def test_row_chunks_equal_one_call():
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), Mish(), torch.nn.Linear(16, 1))
    a, b = torch.randn(1000, 3), torch.randn(1000, 2)
    whole = net(torch.cat([a, b], dim=1)).squeeze(-1)
    chunked = in_row_chunks(lambda x, y: net(torch.cat([x, y], dim=1)).squeeze(-1), a, b, rows=128)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)
    assert rows_per_call(torch.device("cpu")) and rows_per_call(torch.device("meta")) is None
