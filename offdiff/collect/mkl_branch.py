"""MKL's kernels not chosen by CPU: collecting runs MKL in its COMPATIBLE code branch.

torch's CPU build does its matrix products in MKL, which picks its kernels by CPU. The float rounding of
those kernels differs between CPUs, and SAC's 150k steps grow it into other policies: the same recipe and
seed wrote other medium datasets on an Intel Xeon than on an AMD EPYC (results/local-suite/ABOUT.md). MKL's
conditional numerical reproducibility fixes the branch. COMPATIBLE (SSE2 kernels without approximate
reciprocals) is the one branch MKL runs on Intel and other CPUs alike; on non-Intel CPUs, MKL ignores every
other setting. MKL fixes its branch at its first call, so `offdiff data collect` sets it before any torch math
runs (`request_compatible`: `mkl_serv_cbwr_set`, behind `mkl_cbwr_set`), and the collection records the branch it got.
The other CPU-dependent part, torch's float32 square root in Adam, is replaced in `offdiff.collect.adam`
(results/local-suite/portable/ABOUT.md).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

COMPATIBLE = "COMPATIBLE"
_NAMES = {1: "OFF", 2: "AUTO", 3: COMPATIBLE, 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
          10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}  # MKL's MKL_CBWR_* codes
_CODES = {name: code for code, name in _NAMES.items()}
_BRANCH_OPTION = 1  # MKL_CBWR_BRANCH


def _mkl(function: str) -> Callable[..., int] | None:
    """A function of the MKL inside torch's CPU library; None where torch has no MKL or does not export it."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    library = next((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*"), None)
    try:
        return None if library is None else getattr(ctypes.CDLL(str(library)), function)
    except (OSError, AttributeError):
        return None


def request_compatible() -> None:
    """Ask MKL for the COMPATIBLE branch; takes effect only if no MKL call has run yet in this process."""
    set_branch = _mkl("mkl_serv_cbwr_set")
    if set_branch is not None:
        set_branch(_CODES[COMPATIBLE])


def current() -> str | None:
    """The MKL code branch this process runs ("OFF": MKL's own choice by CPU); None where torch has no MKL."""
    get = _mkl("mkl_serv_cbwr_get")
    if get is None:
        return None
    code = int(get(_BRANCH_OPTION))
    return _NAMES.get(code, f"code {code}")


def portability_note(branch: str | None) -> str | None:
    """One line for a collection whose MKL kernels depend on this CPU; None under COMPATIBLE."""
    if branch == COMPATIBLE:
        return None
    why = "torch here has no MKL (or does not expose it)" if branch is None else f"MKL's code branch is {branch}"
    return (f"note: {why}, not {COMPATIBLE}: this data depends on this kind of CPU (`offdiff "
            f"data collect` asks for {COMPATIBLE} itself; from Python, set MKL_CBWR={COMPATIBLE} before torch runs)")
