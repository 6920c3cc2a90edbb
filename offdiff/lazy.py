"""Done at first need, not at import, so that importing a package (for its CLI, or to plan a grid) stays light."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for `package` that imports each name of `exports` from its module when first asked for."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__


class _CompileDisabled:
    def __init__(self, fn: Callable[..., Any]):
        functools.update_wrapper(self, fn)
        self.fn = self.call = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)


_COMPILE_DISABLED: list[_CompileDisabled] = []


def compile_disabled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`torch.compiler.disable(fn)` (torch.compile runs `fn` eagerly), applied by `disable_for_compile()` before
    anything is compiled rather than at import: `torch.compiler.disable` imports torch._dynamo, which takes as
    long as importing torch, and eager runs and grid planning never need it."""
    wrapper = _CompileDisabled(fn)
    _COMPILE_DISABLED.append(wrapper)
    return wrapper


def disable_for_compile() -> None:
    """Apply `torch.compiler.disable` to every `compile_disabled` function (`compile_steps`, before compiling)."""
    import torch

    for wrapper in _COMPILE_DISABLED:
        wrapper.call = torch.compiler.disable(wrapper.fn)
