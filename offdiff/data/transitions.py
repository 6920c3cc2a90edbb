"""Flat transition arrays (the one in-memory dataset format) and their atomic on-disk cache."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from offdiff.errors import OffdiffError
from offdiff.io import writing

_FLOAT_FIELDS = ("observations", "actions", "rewards", "next_observations")
_BOOL_FIELDS = ("terminals", "timeouts")
FIELDS = _FLOAT_FIELDS + _BOOL_FIELDS


@dataclasses.dataclass(eq=False)
class Transitions:
    """N transitions. `terminals`: true environment terminations; `timeouts`: truncations (not terminal).

    Arrays are converted to float32 / bool on construction.
    """

    observations: np.ndarray  # (N, S)
    actions: np.ndarray  # (N, A)
    rewards: np.ndarray  # (N,)
    next_observations: np.ndarray  # (N, S)
    terminals: np.ndarray  # (N,)
    timeouts: np.ndarray  # (N,)

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float32))
        for name in _BOOL_FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=bool))

    def __len__(self) -> int:
        return len(self.rewards)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in FIELDS}

    def replace(self, **fields: np.ndarray) -> Transitions:
        return dataclasses.replace(self, **fields)

    def content_sha256(self) -> str:
        """SHA-256 of every field's name, dtype, shape and values: the identity of the data itself, which a
        dataset's name is not (a dataset collected again under the same name, on another CPU, differs)."""
        digest = hashlib.sha256()
        for name, values in self.arrays().items():
            digest.update(f"{name}:{values.dtype.str}:{values.shape};".encode())
            digest.update(np.ascontiguousarray(values).data)
        return digest.hexdigest()

    def validate(self, name: str) -> Transitions:
        """Raise OffdiffError naming the dataset, field and first bad row for bad shapes or NaN/inf."""
        n = len(self.rewards)
        if n == 0:
            raise OffdiffError(f"dataset {name} has no transitions")
        obs_dim = self.observations.shape[1] if self.observations.ndim == 2 else "S"
        act_dim = self.actions.shape[1] if self.actions.ndim == 2 else "A"
        expected = {
            "observations": (n, obs_dim),
            "actions": (n, act_dim),
            "rewards": (n,),
            "next_observations": (n, obs_dim),
            "terminals": (n,),
            "timeouts": (n,),
        }
        for field, shape in expected.items():
            actual = getattr(self, field).shape
            if actual != shape:
                raise OffdiffError(
                    f"dataset {name}: field {field} has shape {actual}, expected {shape} "
                    f"(N={n} rewards); fix the dataset file"
                )
        for field in _FLOAT_FIELDS:
            values = getattr(self, field)
            finite = np.isfinite(values).reshape(n, -1).all(axis=1)
            if not finite.all():
                row = int(np.flatnonzero(~finite)[0])
                raise OffdiffError(
                    f"dataset {name}: field {field} has NaN/inf values (first at row {row}); "
                    "fix the dataset file"
                )
        return self

    def episode_ends(self) -> np.ndarray:
        """The last row of each episode: episodes end at terminals | timeouts and at the end of data."""
        ends = np.flatnonzero(self.terminals | self.timeouts)
        if len(ends) == 0 or ends[-1] != len(self) - 1:
            ends = np.append(ends, len(self) - 1)
        return ends

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return per episode (episodes as in `episode_ends`)."""
        cumulative = np.cumsum(self.rewards, dtype=np.float64)[self.episode_ends()]
        return np.diff(cumulative, prepend=0.0)


def cache_dir() -> Path:
    """`$OFFDIFF_CACHE`, else `~/.cache/offdiff`."""
    return Path(os.environ.get("OFFDIFF_CACHE") or Path.home() / ".cache" / "offdiff")


def _cache_path(key: str) -> Path:
    return cache_dir() / "transitions" / f"{re.sub(r'[^A-Za-z0-9._-]', '_', key)}.npz"


def _read(path: Path) -> Transitions | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return Transitions(**{name: data[name] for name in FIELDS})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _write(path: Path, transitions: Transitions) -> None:
    with writing(path):  # a full disk or read-only cache folder is one line
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **transitions.arrays())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def load_cached(key: str, build: Callable[[], Transitions]) -> Transitions:
    """The transitions cached under `key`, built (and cached atomically) if absent or corrupt."""
    path = _cache_path(key)
    if path.exists():
        cached = _read(path)
        if cached is not None:
            return cached
    transitions = build()
    _write(path, transitions)
    return transitions


def random_transitions(n: int = 512, obs_dim: int = 5, act_dim: int = 3, seed: int = 0) -> Transitions:
    """A random dataset with actions in [-1, 1], some terminals and some timeouts."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    return Transitions(
        observations=obs,
        actions=rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=(obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32),
        terminals=rng.random(n) < 0.05,
        timeouts=rng.random(n) < 0.05,
    )
