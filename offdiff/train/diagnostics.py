"""Stage diagnostics and compute accounting of a run; the stage runner calls them (contract: offdiff/algorithm.py).

- After a stage that names a `diagnostic_policy`, that policy is evaluated once through the suite's one
  evaluation path, on the run's eval episodes and reset seeds, with a generator of its own derived from the
  run's eval seed: a `diagnostics.jsonl` row (offdiff.records.PolicyDiagnostic) with the scores of an
  `evals.jsonl` row. It is never a headline evaluation.
- After a stage that sets `q_calibration`, the critic's Q (`Algorithm.critic_q`) on the dataset's own actions,
  on a fixed random subset of `CALIBRATION_ROWS` transitions (drawn once from the run seed), is compared with
  those rows' discounted returns-to-go of the training rewards (offdiff/data/episodes.py; a row
  offdiff.records.QCalibration): mean Q, mean
  return-to-go, their Pearson correlation, and the fraction of rows whose episode ended by a true termination
  (the others were truncated: their Monte-Carlo return misses the tail after the cut, a lower bound where
  rewards are non-negative).
- After every stage, the plugin's own named scalars (`Algorithm.stage_report`), when it reports any: a row
  offdiff.records.StageReport. A value that is not finite is an error naming the plugin, stage and key.

Rows carry (stage, stage_index, step = the stage's length) and are written before the stage's last checkpoint,
so a restart rewinds them with evals.jsonl. Nothing here draws from the algorithm's, the batch sampler's or
torch's global random streams, so a resumed run stays bit-exact.

`ComputeLedger` records the seconds each stage spent training (steps, logging, checkpoints), evaluating and
diagnosing on the run's device, carried in the checkpoint so the totals of a resumed run count each step once.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from offdiff.algorithm import Algorithm, Stage
from offdiff.data.pipeline import PreparedData
from offdiff.data.scores import normalized_score
from offdiff.errors import OffdiffError
from offdiff.eval import evaluation_row
from offdiff.nets import in_row_chunks, rows_per_call
from offdiff.records import DataReturns, Diagnostic, PolicyDiagnostic, QCalibration, StageReport
from offdiff.train.protocol import Protocol

CALIBRATION_ROWS = 10_000  # dataset transitions in the Q calibration (all of them in a smaller dataset)
KINDS = ("train_s", "eval_s", "diagnostics_s")


def data_returns(data: PreparedData) -> DataReturns:
    """The dataset's own average episode return (before reward transforms), raw and normalized."""
    episodes = data.episodes
    mean = float(episodes.returns.mean())
    return DataReturns(episodes=len(episodes.returns), terminal_episodes=int(episodes.terminal.sum()),
                       mean_return=mean, normalized_mean=float(normalized_score(mean, data.ref)))


def _correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


class StageDiagnostics:
    """The diagnostics of one run: what a stage declares, evaluated after it ends."""

    def __init__(self, algo: Algorithm, data: PreparedData, protocol: Protocol, device: torch.device,
                 eval_seed: int, seed_for: Callable[[str], int]):
        self.algo, self.data, self.protocol, self.device = algo, data, protocol, device
        self.eval_seed, self.seed_for = eval_seed, seed_for
        self._calibration: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # rows, returns, terminal

    def after(self, index: int, stage: Stage) -> list[Diagnostic]:
        """The diagnostic rows of `stage` (none when it declares none), at its last step."""
        rows: list[Diagnostic] = []
        if stage.diagnostic_policy is not None:
            rows.append(self.policy(index, stage, stage.diagnostic_policy))
        if stage.q_calibration:
            rows.append(self.q_calibration(index, stage))
        report = self.report(index, stage)
        return rows + ([report] if report.values else [])

    def report(self, index: int, stage: Stage) -> StageReport:
        generator = torch.Generator(device=self.device).manual_seed(self.seed_for(f"report:{index}"))
        values = {}
        for key, value in self.algo.stage_report(stage.name, self.data.buffer, generator).items():
            where = f"{self.algo.name}'s stage_report after {stage.name}: {key}"
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise OffdiffError(f"{where} = {value!r} is not a number") from None
            if not math.isfinite(number):
                raise OffdiffError(f"{where} = {number} is not finite")
            values[str(key)] = number
        return StageReport(stage.name, index, stage.steps, values)

    def policy(self, index: int, stage: Stage, policy: str) -> PolicyDiagnostic:
        generator = torch.Generator(device=self.device).manual_seed(self.seed_for(f"diagnostic:{policy}:{index}"))
        scores = evaluation_row(lambda obs: self.algo.diagnostic_act(policy, obs, generator), self.data,
                                episodes=self.protocol.eval_episodes, num_envs=self.protocol.eval_envs,
                                seed=self.eval_seed, device=self.device)
        return PolicyDiagnostic(stage.name, index, stage.steps, policy, scores)

    def _subset(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fixed rows, their returns-to-go and whether their episode terminated (computed once per run)."""
        if self._calibration is None:
            buffer, discount = self.data.buffer, self.algo.q_discount()
            rng = np.random.default_rng(self.seed_for("q_calibration"))
            rows = np.sort(rng.choice(len(buffer), size=min(len(buffer), CALIBRATION_ROWS), replace=False))
            returns = self.data.episodes.returns_to_go(buffer.rewards.cpu().numpy(), discount)[rows]
            self._calibration = rows, returns, self.data.episodes.row_terminal()[rows]
        return self._calibration

    @torch.no_grad()
    def q_calibration(self, index: int, stage: Stage) -> QCalibration:
        rows, returns, terminal = self._subset()
        picked = torch.as_tensor(rows, device=self.device)
        obs, actions = self.data.buffer.obs[picked], self.data.buffer.actions[picked]
        q = in_row_chunks(self.algo.critic_q, obs, actions, rows=rows_per_call(self.device)).double().cpu().numpy()
        return QCalibration(stage.name, index, stage.steps, transitions=len(rows), discount=self.algo.q_discount(),
                            mean_q=float(q.mean()), mean_return=float(returns.mean()),
                            correlation=_correlation(q, returns), terminal_fraction=float(terminal.mean()))


class ComputeLedger:
    """Seconds per stage and kind (`KINDS`) on the run's device, settled into every checkpoint.

    `timing(stage, kind)` charges a block (an evaluation, the diagnostics); `settle(stage)` charges the rest of
    the time since the last settle (or `begin`) to training. A stage loaded from the cache records what its
    producer spent, marked `cached`.
    """

    def __init__(self, device: str):
        self.device = device
        self.stages: dict[str, dict[str, Any]] = {}
        self.complete = True  # False: resumed from a checkpoint that predates compute accounting
        self._mark, self._other = time.perf_counter(), 0.0

    def _entry(self, stage: str) -> dict[str, Any]:
        return self.stages.setdefault(stage, dict.fromkeys(KINDS, 0.0))

    def begin(self) -> None:
        self._mark, self._other = time.perf_counter(), 0.0

    @contextlib.contextmanager
    def timing(self, stage: str, kind: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self._entry(stage)[kind] += seconds
            self._other += seconds

    def settle(self, stage: str) -> None:
        now = time.perf_counter()
        self._entry(stage)["train_s"] += now - self._mark - self._other
        self._mark, self._other = now, 0.0

    def acted(self, stage: str, actions_per_s: float) -> None:
        """The policy's acting throughput at `stage`'s latest evaluation (`TimedAct`)."""
        self._entry(stage)["eval_actions_per_s"] = actions_per_s

    def reused(self, stage: str, produced: dict[str, Any] | None) -> None:
        """`stage` came from the cache; `produced`: its producer's entry (None: an artifact older than this)."""
        entry = self._entry(stage)
        entry["cached"] = True
        entry["producer_device_s"] = None if produced is None else sum(produced[k] for k in KINDS)
        entry["producer_train_s"] = None if produced is None else produced["train_s"]

    def state(self) -> dict[str, Any]:
        return {"stages": {k: dict(v) for k, v in self.stages.items()}, "complete": self.complete}

    def load(self, state: dict[str, Any] | None) -> None:
        if state is None:
            self.stages, self.complete = {}, False
        else:
            self.stages, self.complete = {k: dict(v) for k, v in state["stages"].items()}, state["complete"]

    def summary(self) -> dict[str, Any]:
        """Per stage: this run's seconds by kind and `device_s` (their sum), for a stage from the cache what its
        producer spent (in all, and training), and the actions/s of its latest evaluation; the run's total, and
        the total with the cached stages' producers (None: unknown)."""
        stages = {name: {**{k: round(entry[k], 3) for k in KINDS}, "device_s": round(sum(entry[k] for k in KINDS), 3),
                         **({"eval_actions_per_s": round(entry["eval_actions_per_s"], 1)}
                            if "eval_actions_per_s" in entry else {}),
                         **({"cached": True, "producer_device_s": entry["producer_device_s"],
                             "producer_train_s": entry.get("producer_train_s")}
                            if entry.get("cached") else {})}
                  for name, entry in self.stages.items()}
        own = sum(s["device_s"] for s in stages.values())
        producers = [s["producer_device_s"] for s in stages.values() if s.get("cached")]
        return {"device": self.device, "stages": stages, "run_device_s": round(own, 3),
                "device_s_with_cached": None if None in producers else round(own + sum(producers), 3),
                "complete": self.complete}
