"""A release's network beside offdiff's: their tensors paired, offdiff's in the release's layout.

Both sides build their networks from the same layers in the same order (the releases' `nn.Linear` /
`nn.LayerNorm`; offdiff's, or its vectorized critic heads), so pairing the layers that hold parameters, in
module order, pairs the networks; every pair's shapes are checked. `same_draws.py` copies offdiff's initial
weights into the release through these pairs and compares the two sides after every step.
"""

from __future__ import annotations

import torch
from torch import nn

from offdiff.errors import OffdiffError

Pairs = list[tuple[torch.Tensor, torch.Tensor]]


def _layers(module: nn.Module) -> list[nn.Module]:
    """The modules that hold parameters themselves, in module order."""
    return [m for m in module.modules() if any(True for _ in m.parameters(recurse=False))]


def checked(pairs: Pairs, where: str) -> Pairs:
    """`pairs`, after checking that each pair's shapes agree."""
    for release, mine in pairs:
        if release.shape != mine.shape:
            raise OffdiffError(f"same draws: {where}: the release has a {tuple(release.shape)} tensor where offdiff "
                               f"has {tuple(mine.shape)}; the layouts differ")
    return pairs


def _zip(release: list[nn.Module], mine: list[nn.Module], where: str) -> list[tuple[nn.Module, nn.Module]]:
    if len(release) != len(mine):
        raise OffdiffError(f"same draws: {where}: layers with parameters: {len(release)} in the release, "
                           f"{len(mine)} in offdiff")
    return list(zip(release, mine, strict=True))


def plain(release: nn.Module, mine: nn.Module, where: str) -> Pairs:
    """Layer by layer, weight with weight and bias with bias."""
    layers = _zip(_layers(release), _layers(mine), where)
    return checked([(r.weight, m.weight) for r, m in layers] + [(r.bias, m.bias) for r, m in layers], where)


def ensemble_head(release: nn.Module, ensemble: nn.Module, head: int, where: str) -> Pairs:
    """A release's network against one head of offdiff's vectorized ensemble (`VectorizedLinear` weights are
    stored (E, in, out), biases and LayerNorm parameters (E, 1, d))."""
    pairs: Pairs = []
    for r, m in _zip(_layers(release), _layers(ensemble), where):
        weight = m.weight[head].T if isinstance(r, nn.Linear) else m.weight[head, 0]
        pairs += [(r.weight, weight), (r.bias, m.bias[head, 0])]
    return checked(pairs, where)
