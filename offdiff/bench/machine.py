"""What a speed figure was measured on, and peak memory over a block of work."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path
from typing import Any

import torch

from offdiff.provenance import describe_device, git_state
from offdiff.runtime import allocator_setting

MB = 2**20


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe_machine(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, torch threads, versions, load average and the device: what makes figures comparable."""
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "malloc": allocator_setting(),
        "device": describe_device(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": load_average(),
        "git": git_state(),
    }


class PeakMemory:
    """Peak memory (MiB) over a block: max allocated on CUDA; on CPU the peak RSS of this process.

    On Linux the RSS peak (VmHWM) is reset at `reset()` through /proc/self/clear_refs; where that is not
    allowed, `read()` is the process's peak since it started, and `per_block` says so.
    """

    STATUS, CLEAR = Path("/proc/self/status"), Path("/proc/self/clear_refs")

    def __init__(self, device: torch.device):
        self.device = device
        self.per_block = True

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            self.CLEAR.write_text("5")
        except OSError:
            self.per_block = False

    def read(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / MB
        try:
            for line in self.STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
        except OSError:
            pass
        self.per_block = False
        scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MB
