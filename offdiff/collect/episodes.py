"""`Episodes`: whole episodes back to back, the form a collected dataset has before it goes to Minari."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from minari.data_collector import EpisodeBuffer

from offdiff.io import atomic_write_bytes

_FIELDS = ("observations", "actions", "rewards", "terminations", "truncations", "lengths")


@dataclasses.dataclass(eq=False)
class Episodes:
    """E episodes; episode i has T_i steps and T_i + 1 observations (its final one included).

    A `truncations` flag marks a time limit or a cut (the data ran out); never a true termination.
    """

    observations: np.ndarray  # (ΣT_i + E, S) float64
    actions: np.ndarray  # (ΣT_i, A) float32, env units
    rewards: np.ndarray  # (ΣT_i,) float64
    terminations: np.ndarray  # (ΣT_i,) bool
    truncations: np.ndarray  # (ΣT_i,) bool
    lengths: np.ndarray  # (E,) int64

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float64)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        self.terminations = np.asarray(self.terminations, dtype=bool)
        self.truncations = np.asarray(self.truncations, dtype=bool)
        self.lengths = np.asarray(self.lengths, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_steps(self) -> int:
        return int(self.lengths.sum())

    def returns(self) -> np.ndarray:
        ends = np.cumsum(self.lengths)
        return np.add.reduceat(self.rewards, ends - self.lengths) if len(self) else np.zeros(0)

    def buffers(self) -> list[EpisodeBuffer]:
        """One Minari episode buffer per episode, ids 0, 1, ..."""
        out, step = [], 0
        for i, length in enumerate(self.lengths.tolist()):
            s = slice(step, step + length)
            out.append(EpisodeBuffer(
                id=i, observations=self.observations[step + i: step + i + length + 1],
                actions=self.actions[s], rewards=self.rewards[s], terminations=self.terminations[s],
                truncations=self.truncations[s],
            ))
            step += length
        return out

    @classmethod
    def concat(cls, parts: Sequence[Episodes]) -> Episodes:
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS})

    @classmethod
    def from_steps(
        cls, obs: np.ndarray, act: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
        terminated: np.ndarray, truncated: np.ndarray,
    ) -> Episodes:
        """Split a log of consecutive steps of one env into episodes; an unfinished last one is cut (truncated)."""
        truncated = truncated.copy()
        if len(truncated) and not (terminated[-1] or truncated[-1]):
            truncated[-1] = True
        ends = np.flatnonzero(terminated | truncated)
        starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        observations = [np.concatenate([obs[a: a + 1], next_obs[a: b + 1]]) for a, b in zip(starts, ends, strict=True)]
        return cls(
            observations=np.concatenate(observations) if observations else np.zeros((0, obs.shape[1])),
            actions=act, rewards=reward, terminations=terminated, truncations=truncated, lengths=ends - starts + 1,
        )

    def save(self, path: Path) -> None:
        """Write atomically as .npz."""
        buffer = io.BytesIO()
        np.savez(buffer, **{name: getattr(self, name) for name in _FIELDS})
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Episodes | None:
        """The episodes saved at `path`, or None if the file is missing or damaged (they are collected again)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(**{name: data[name] for name in _FIELDS})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
