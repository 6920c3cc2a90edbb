"""Vectorized ensembles: E independent MLPs evaluated with one batched matmul per layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from offdiff.nets.activations import Mish


class VectorizedLinear(nn.Module):
    """E independent Linear layers: (E, B, in) → (E, B, out) with one `baddbmm`.

    Weight has shape (E, in, out) and bias (E, 1, out). Each member is initialised like `nn.Linear`:
    weight and bias ~ U(±1/√in) (kaiming-uniform with a = √5).
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class VectorizedLayerNorm(nn.Module):
    """LayerNorm over the feature dim of (E, B, d) with per-member affine parameters of shape (E, 1, d)."""

    def __init__(self, ensemble_size: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, dim))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, F.layer_norm(x, x.shape[-1:], eps=self.eps), self.weight)


class EnsembleMLP(nn.Module):
    """E independent MLPs (the layout of `mlp`) run as one: (B, in) or (E, B, in) → (E, B, out).

    A (B, in) input is shared by all members through a stride-0 `expand` view, not a copy.
    """

    def __init__(
        self,
        ensemble_size: int,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        activation: type[nn.Module] = Mish,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.ensemble_size = ensemble_size
        layers: list[nn.Module] = []
        for width in hidden:
            layers.append(VectorizedLinear(ensemble_size, in_dim, width))
            if layer_norm:
                layers.append(VectorizedLayerNorm(ensemble_size, width))
            layers.append(activation())
            in_dim = width
        layers.append(VectorizedLinear(ensemble_size, in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(self.ensemble_size, *x.shape)
        return self.net(x)
