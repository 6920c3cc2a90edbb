"""Where a result came from: versions, git commit and dirty flag, machine, SLURM ids."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

import offdiff


def _git(*args: str) -> str | None:
    root = Path(offdiff.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit offdiff runs from and whether tracked files differ from it (None outside a checkout)."""
    commit = _git("rev-parse", "HEAD")
    dirty = None if commit is None else bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": commit, "dirty": dirty}


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def provenance(device: torch.device, plugin_package: str | None = None) -> dict[str, Any]:
    slurm = {k: os.environ[k] for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID") if k in os.environ}
    return {
        "versions": {
            "offdiff": offdiff.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            **({plugin_package: package_version(plugin_package)} if plugin_package else {}),
            **{p: package_version(p) for p in ("numpy", "gymnasium", "mujoco", "minari")},
        },
        "git": git_state(),
        "device": describe_device(device),
        "host": platform.node(),
        "slurm": slurm,
    }
