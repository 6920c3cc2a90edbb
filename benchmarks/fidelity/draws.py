"""The random numbers of one side, recorded, then served to the other side in its own call order.

offdiff draws from `torch.Generator`s; the releases draw from torch's and numpy's global RNGs, in their own
order and sometimes more often (Diffusion-QL's sampler draws a noise at t = 0 that it multiplies by 0).
`recording()` lets offdiff draw as usual and keeps every value; an adapter rearranges that list into the
order its release draws in (`Adapter.step_draws`, `act_draws`); `serving(draws)` then answers the release's
calls with those values, checking each call's kind and shape against the list. So both sides compute with
the same random numbers, and any difference left is in what they compute.

Patched while a block runs: torch.randn, randn_like, randint, rand, multinomial, randperm,
numpy.random.uniform and the standard normal behind torch.distributions.Normal.rsample (the calls the three
releases and offdiff's plugins make during a step, at a stage's start and when acting).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributions.normal as torch_normal

from offdiff.errors import OffdiffError

KINDS = {"randn": "normal", "randn_like": "normal", "randint": "integers", "rand": "uniform",
         "multinomial": "choice", "randperm": "permutation", "_standard_normal": "normal"}
TORCH = ("randn", "randn_like", "randint", "rand", "multinomial", "randperm")


@dataclasses.dataclass(frozen=True)
class Draw:
    kind: str  # normal, integers, uniform, choice, permutation (torch) or np_uniform (numpy.random.uniform)
    value: torch.Tensor


def _size(args: tuple[Any, ...]) -> tuple[int, ...]:
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        return tuple(args[0])
    return tuple(int(a) for a in args)


def _requested_shape(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, ...]:
    if name == "randn_like":
        return tuple(args[0].shape)
    if name == "randint":
        return tuple(kwargs["size"] if "size" in kwargs else args[-1])
    if name == "multinomial":
        probs, samples = args[0], (args[1] if len(args) > 1 else kwargs["num_samples"])
        return (*probs.shape[:-1], int(samples))
    if name == "_standard_normal":
        return tuple(args[0] if args else kwargs["shape"])
    return _size(args)


@contextlib.contextmanager
def _patched(handler: Callable[[str, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]) -> Iterator[None]:
    originals = {name: getattr(torch, name) for name in TORCH}
    np_uniform, standard_normal = np.random.uniform, torch_normal._standard_normal

    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *args, **kwargs: handler(name, original, args, kwargs)

    for name, fn in originals.items():
        setattr(torch, name, wrap(name, fn))
    np.random.uniform = wrap("np_uniform", np_uniform)
    torch_normal._standard_normal = wrap("_standard_normal", standard_normal)
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)
        np.random.uniform, torch_normal._standard_normal = np_uniform, standard_normal


@contextlib.contextmanager
def recording() -> Iterator[list[Draw]]:
    """Every draw made inside the block, in order, made as usual (from the caller's generators)."""
    draws: list[Draw] = []

    def record(name: str, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        value = original(*args, **kwargs)
        draws.append(Draw(KINDS.get(name, name), torch.as_tensor(value).detach().clone()))
        return value

    with _patched(record):
        yield draws


@contextlib.contextmanager
def serving(draws: list[Draw]) -> Iterator[None]:
    """Answer each draw inside the block with the next of `draws`; every one must be used, in kind and shape."""
    queue = list(draws)
    count = 0

    def serve(name: str, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        nonlocal count
        kind, count = KINDS.get(name, name), count + 1
        if not queue:
            raise OffdiffError(f"same draws: the release made draw {count} ({kind}), more than the adapter laid out")
        draw = queue.pop(0)
        if name == "np_uniform":
            if draw.kind != kind:
                raise OffdiffError(f"same draws: draw {count} is numpy.random.uniform, the layout has {draw.kind}")
            return float(draw.value)
        shape = _requested_shape(name, args, kwargs)
        if draw.kind != kind or draw.value.numel() != int(np.prod(shape)):
            raise OffdiffError(f"same draws: draw {count} is {kind} of shape {shape}, the layout has {draw.kind} of "
                               f"shape {tuple(draw.value.shape)}")
        value = draw.value.reshape(shape).clone()
        device = kwargs.get("device") or (args[0].device if name in ("randn_like", "multinomial") else None)
        dtype = kwargs.get("dtype") or (args[0].dtype if name == "randn_like" else None)
        if name == "_standard_normal":
            dtype, device = (args[1], args[2]) if len(args) == 3 else (kwargs.get("dtype"), kwargs.get("device"))
        return value.to(device=device or value.device, dtype=dtype or value.dtype)

    with _patched(serve):
        yield
    if queue:
        raise OffdiffError(f"same draws: the release made {count} draws and left {len(queue)} of the layout unused")
