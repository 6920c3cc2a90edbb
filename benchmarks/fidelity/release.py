"""A release checkout: its pinned commit, its local changes, and importing its modules with the stubs in place.

The releases import their own modules by top-level names (`agents`, `utils`, `model`, ...). `imported` puts the
checkout first on `sys.path` and the stubs (`fidelity.stubs`) in `sys.modules` for as long as a run needs them,
and afterwards removes everything it loaded, so nothing leaks into the next run or test.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fidelity import stubs
from offdiff.errors import OffdiffError


@dataclass(frozen=True)
class Checkout:
    path: Path
    commit: str | None  # HEAD of the checkout (None: not a git checkout)
    changed: tuple[str, ...]  # tracked files that differ from HEAD (e.g. EDA's documented fix)

    def describe(self) -> dict[str, object]:
        return {"path": str(self.path), "commit": self.commit, "changed_files": list(self.changed)}


def _git(path: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def open_checkout(path: Path, pinned: str, any_commit: bool) -> Checkout:
    """The checkout at `path`; at another commit than `pinned` (or not a git checkout) it is an error unless
    `any_commit` (then the commit it is at is recorded in the run's manifest)."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise OffdiffError(f"--checkout {path} is not a directory (clone the release there first; see "
                           "benchmarks/fidelity/README.md)")
    commit = _git(path, "rev-parse", "HEAD")
    if commit is not None and _git(path, "rev-parse", "--show-toplevel") != str(path):
        commit = None  # a folder inside some other repository: not the release's own checkout
    if not any_commit and (commit is None or not commit.startswith(pinned)):
        found = f"it is at {commit[:7]}" if commit else "it is not a git checkout"
        raise OffdiffError(f"--checkout {path}: the harness is pinned to commit {pinned} and {found}; run "
                           f"`git -C {path} checkout {pinned}`, or pass --any-commit to compare another version")
    changed = _git(path, "diff", "--name-only", "HEAD") if commit else None
    return Checkout(path, commit, tuple(changed.split()) if changed else ())


def _top_level_names(path: Path) -> set[str]:
    """The import names a checkout provides at its top level (modules and packages)."""
    return {p.stem for p in path.glob("*.py")} | {p.name for p in path.iterdir() if (p / "__init__.py").is_file()}


def _from_checkout(module: object, path: Path) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(path)


@contextlib.contextmanager
def imported(checkout: Checkout) -> Iterator[None]:
    """Within the block, the release's modules import from `checkout`, with gym, d4rl and wandb stubbed."""
    path = checkout.path
    names = _top_level_names(path) | set(stubs.STUBBED)
    shadowed = {n: m for n, m in sys.modules.items() if n.partition(".")[0] in names}
    for name in shadowed:
        del sys.modules[name]
    sys.modules.update(stubs.modules())
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))
        for name, module in list(sys.modules.items()):
            if name in stubs.STUBBED or _from_checkout(module, path):
                del sys.modules[name]
        sys.modules.update(shadowed)
