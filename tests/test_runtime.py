"""The process-wide malloc setting (offdiff/runtime.py): applied once, reported, and the user's own settings win."""

from __future__ import annotations

import platform

import pytest

from offdiff import runtime

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_keep_freed_memory_applies_once_and_is_reported():
    applied = runtime.keep_freed_memory()
    assert applied.startswith("glibc: mmap threshold 32 MiB") or applied == "user's MALLOC_*_ environment"
    assert runtime.keep_freed_memory() == applied and runtime.allocator_setting() == applied


def test_the_users_glibc_environment_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert runtime._apply() in ("user's MALLOC_*_ environment", "default (not glibc)")


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("", ""))
    assert runtime._apply() == "default (not glibc)"
