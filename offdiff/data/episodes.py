"""The dataset's episodes: where they end, how, and what they returned; discounted returns-to-go.

An episode ends at a true termination (`terminals`), at a truncation (`timeouts`) or at the end of the
data (`Transitions.episode_ends`). A terminal ends the return; a truncated episode's Monte-Carlo
return-to-go misses the rewards after the cut, so it is a lower bound of the value where rewards are
non-negative. The two are kept apart: `terminal` says, per episode, which way it ended.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from offdiff.data.transitions import Transitions


@dataclasses.dataclass(frozen=True)
class Episodes:
    ends: np.ndarray  # (E,) int: the last row of each episode
    terminal: np.ndarray  # (E,) bool: ended by a true termination (else a timeout or the end of the data)
    returns: np.ndarray  # (E,) float64: undiscounted returns, before any reward transform

    @classmethod
    def of(cls, transitions: Transitions) -> Episodes:
        ends = transitions.episode_ends()
        return cls(ends, transitions.terminals[ends].copy(), transitions.episode_returns())

    def row_terminal(self) -> np.ndarray:
        """(N,) bool: whether each row's episode ended by a true termination."""
        lengths = np.diff(self.ends, prepend=-1)
        return np.repeat(self.terminal, lengths)

    def returns_to_go(self, rewards: np.ndarray, discount: float) -> np.ndarray:
        """(N,) float64: Σ_k γ^k r_{t+k} to the end of each row's episode, of `rewards` (e.g. transformed)."""
        out = np.empty(len(rewards), dtype=np.float64)
        ends = set(self.ends.tolist())
        running = 0.0
        for row in range(len(rewards) - 1, -1, -1):
            if row in ends:
                running = 0.0
            running = float(rewards[row]) + discount * running
            out[row] = running
        return out
