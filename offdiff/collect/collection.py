"""`offdiff data collect`: D4RL-style datasets for a gymnasium MuJoCo task, written into the local Minari store.

D4RL's recipe, with offdiff's SAC (`offdiff.collect.sac`) as the online learner:
- `expert`: the SAC policy at the end of the budget;
- `medium`: an earlier snapshot of the same run, at about a third of the expert's score (`pick_medium`);
- `medium-replay`: that run's replay buffer up to the medium snapshot (uniform warm-up steps included);
- `random`: a uniform random policy;
- `medium-expert`: the medium and the expert episodes together.
Behaviour policies act stochastically (as SAC acts while training). Reference scores, as D4RL defines
them: the random policy's and the expert's mean evaluation returns (ref_min_score, ref_max_score in the
Minari metadata), so a normalized score of 100 is this collection's own expert.
On a CPU the collection is deterministic; run from `offdiff data collect`, MKL runs its COMPATIBLE branch,
so that MKL's kernels do not depend on the CPU (`offdiff.collect.mkl_branch`; the branch is recorded).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minari.storage.datasets_root_dir import get_dataset_path

from offdiff.collect import mkl_branch
from offdiff.collect.envs import KINDS, EnvInfo, env_info
from offdiff.collect.episodes import Episodes
from offdiff.collect.rollout import PolicyFactory, actor_policy, evaluate_returns, rollout, uniform_policy
from offdiff.collect.sac import SACConfig
from offdiff.collect.store import dataset_id, recorded_fingerprint, write_dataset
from offdiff.collect.train import BehaviourRun, SACRun, check_budget
from offdiff.config import apply_overrides, config_dict, stable_hash
from offdiff.data.scores import RefScores
from offdiff.data.transitions import cache_dir
from offdiff.errors import OffdiffError
from offdiff.io import atomic_write_json
from offdiff.runtime import derive_seed, resolve_device

DEFAULT_TRANSITIONS = 1_000_000  # per random / medium / expert dataset, as in D4RL


@dataclass(frozen=True)
class CollectRequest:
    env_id: str
    kinds: tuple[str, ...] = KINDS
    budget: int | None = None  # SAC steps; None: the env's default (`envs.DEFAULT_BUDGETS`)
    episodes: int | None = None  # whole episodes per dataset, or
    transitions: int | None = None  # steps per dataset (the last episode cut); default 1M
    seed: int = 0
    namespace: str = "local"
    device: str = "cpu"
    overwrite: bool = False
    sac: SACConfig = SACConfig()


@dataclass(frozen=True)
class Collected:
    dataset_id: str
    status: str  # "written" or "skipped" (already collected by the same request)
    path: Path


def parse_kinds(text: str) -> tuple[str, ...]:
    """`"random,medium"` -> ("random", "medium"), in the canonical order; an unknown kind is an error."""
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    unknown = sorted(kinds - set(KINDS))
    if unknown or not kinds:
        raise OffdiffError(f"unknown dataset kind(s) {unknown or [text]}; choose from {', '.join(KINDS)}")
    return tuple(k for k in KINDS if k in kinds)


def _size(request: CollectRequest) -> dict[str, int]:
    if request.episodes is not None and request.transitions is not None:
        raise OffdiffError("give --episodes or --transitions, not both")
    size = {"episodes": request.episodes} if request.episodes is not None else {
        "transitions": DEFAULT_TRANSITIONS if request.transitions is None else request.transitions}
    if next(iter(size.values())) <= 0:
        raise OffdiffError(f"dataset size must be positive, got {size}")
    return size


class Collection:
    """One request resolved: dataset ids, fingerprints, work folder; `run` does what is left to do."""

    def __init__(self, request: CollectRequest, progress: bool, log: Callable[[str], None]):
        self.request, self.progress, self.log = request, progress, log
        self.env: EnvInfo = env_info(request.env_id)
        self.kinds = parse_kinds(",".join(request.kinds))
        self.size = _size(request)
        self.budget = self.env.default_budget if request.budget is None else request.budget
        if self.budget <= 0:
            raise OffdiffError(f"--budget must be positive, got {self.budget}")
        self.device = resolve_device(request.device)
        self.ids = {kind: dataset_id(request.namespace, self.env, kind) for kind in self.kinds}
        check_budget(self.budget, request.sac)
        self.mkl_branch = mkl_branch.current() if self.device.type == "cpu" else None
        self.train_spec = {"env": self.env.env_id, "seed": request.seed, "budget": self.budget,
                           "sac": config_dict(request.sac), "device": self.device.type,
                           "mkl_branch": self.mkl_branch, "optimizer": "adam-ieee-sqrt"}
        self.train_key = stable_hash(self.train_spec)
        self.root = cache_dir() / "collect" / self.env.env_id / f"seed_{request.seed}"
        self.work = self.root / f"sac-{self.train_key}"

    def fingerprint(self, kind: str) -> str:
        """A hash of everything that determines the dataset's content."""
        return stable_hash({
            "env": self.env.env_id, "seed": self.request.seed, "kind": kind,
            "size": None if kind == "medium-replay" else self.size,
            "sac": self.train_key,  # random data too: its reference max is this run's expert
        }, length=16)

    def pending(self) -> list[str]:
        """Kinds still to write; a dataset id taken by anything but this collection is an error (unless overwrite)."""
        todo = []
        for kind, dataset in self.ids.items():
            recorded = recorded_fingerprint(dataset)
            if recorded == self.fingerprint(kind) and not self.request.overwrite:
                self.log(f"{dataset}: already collected by this request, skipped")
            elif recorded is None or self.request.overwrite:
                todo.append(kind)
            else:
                raise OffdiffError(
                    f"dataset {dataset} already exists and was not made by this collection; "
                    "pass --overwrite to replace it or choose another --namespace"
                )
        return todo

    def _episodes(self, name: str, build: Callable[[], Episodes], folder: Path) -> Episodes:
        """Episodes cached (atomically) in the work folder, so an interrupted collection does not redo them."""
        tag = "-".join(f"{k}{v}" for k, v in self.size.items())
        path = folder / f"{name}-{tag}.npz"
        episodes = Episodes.load(path)
        if episodes is None:
            episodes = build()
            episodes.save(path)
        return episodes

    def _rollout(self, name: str, policy: PolicyFactory) -> Episodes:
        return rollout(policy, self.env, seed=derive_seed(self.request.seed, f"collect-{name}"), device=self.device,
                       desc=f"{name} {self.env.env_id}", progress=self.progress, **self.size)

    def run(self) -> list[Collected]:
        todo = self.pending()
        if not todo:
            return [Collected(d, "skipped", get_dataset_path(d)) for d in self.ids.values()]
        eval_episodes, seed = self.request.sac.eval_episodes, self.request.seed
        random_return = evaluate_returns(uniform_policy(self.env.act_dim), self.env, eval_episodes,
                                         derive_seed(seed, "collect-eval"), self.device)
        atomic_write_json(self.work / "request.json", self.train_spec)
        note = mkl_branch.portability_note(self.mkl_branch) if self.device.type == "cpu" else None
        if note:
            self.log(note)
        self.log(f"training SAC on {self.env.env_id} for {self.budget} steps (work folder {self.work})")
        sac_run = SACRun(self.env, self.request.sac, self.budget, seed, self.device, self.work, random_return,
                         self.progress, self.log).run()
        ref = _measured_scores(random_return, sac_run, eval_episodes)
        build = self._builders(sac_run)
        out = []
        for kind, dataset in self.ids.items():
            if kind not in todo:
                out.append(Collected(dataset, "skipped", get_dataset_path(dataset)))
                continue
            episodes = build(kind)
            provenance = self._provenance(kind, random_return, sac_run)
            path = write_dataset(dataset, episodes, self.env, ref, eval_episodes,
                                 _description(kind, self.env, episodes, provenance),
                                 "uniform-random" if kind == "random" else "offdiff-SAC", provenance,
                                 self.request.overwrite)
            self.log(f"{dataset}: {len(episodes)} episodes, {episodes.num_steps} steps, "
                     f"mean return {episodes.returns().mean():.1f}")
            out.append(Collected(dataset, "written", path))
        return out

    def _builders(self, run: BehaviourRun) -> Callable[[str], Episodes]:
        @functools.cache
        def build(kind: str) -> Episodes:
            if kind == "random":
                return self._episodes("random", lambda: self._rollout("random", uniform_policy(self.env.act_dim)),
                                      self.root)
            if kind == "medium-replay":
                return run.replay_episodes(run.steps[run.medium])
            if kind == "medium-expert":
                return Episodes.concat([build("medium"), build("expert")])
            actor = run.actor(run.medium if kind == "medium" else -1, self.device)
            return self._episodes(kind, lambda: self._rollout(kind, actor_policy(actor)), self.work)

        return build

    def _provenance(self, kind: str, random_return: float, run: BehaviourRun) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint(kind), "kind": kind, "env": self.env.env_id, "seed": self.request.seed,
            "size": None if kind == "medium-replay" else self.size, "random_return": random_return,
            "budget": self.budget, "sac": config_dict(self.request.sac), "mkl_branch": self.mkl_branch,
            "snapshots": [[s, r] for s, r in zip(run.steps, run.returns, strict=True)],
            "medium_step": run.steps[run.medium], "medium_return": run.returns[run.medium],
            "expert_return": run.returns[-1],
        }


def _measured_scores(random_return: float, run: BehaviourRun, episodes: int) -> RefScores:
    expert = run.returns[-1]
    if expert <= random_return:
        raise OffdiffError(
            f"the expert's mean return {expert:.2f} is not above the random policy's {random_return:.2f}, so "
            "they cannot serve as reference scores; raise --budget"
        )
    return RefScores(random_return, expert, f"offdiff collect: mean returns over {episodes} episodes of the "
                                            "uniform random policy (min) and the expert (max)")


def _description(kind: str, env: EnvInfo, episodes: Episodes, provenance: dict[str, Any]) -> str:
    source = {
        "random": "a uniform random policy",
        "medium": f"the SAC snapshot at step {provenance.get('medium_step')}",
        "expert": f"the SAC policy after {provenance.get('budget')} steps",
        "medium-replay": f"SAC's replay buffer up to step {provenance.get('medium_step')}",
        "medium-expert": "the medium and expert datasets together",
    }[kind]
    return (f"D4RL-style {kind} data for {env.env_id}, collected by offdiff from {source} "
            f"(seed {provenance['seed']}): {len(episodes)} episodes, {episodes.num_steps} steps")


def collect(request: CollectRequest, progress: bool = True, log: Callable[[str], None] = lambda _: None
            ) -> list[Collected]:
    """Collect the requested kinds (see the module docstring); resumes an interrupted collection."""
    return Collection(request, progress, log).run()


def request_from_args(env_id: str, kinds: str, sac_overrides: dict[str, str], **fields: Any) -> CollectRequest:
    """A request from CLI values (`kinds` comma-separated, `sac_overrides` as `--set key=value`)."""
    sac = apply_overrides(SACConfig(), sac_overrides, origin="--set")
    return dataclasses.replace(CollectRequest(env_id), kinds=parse_kinds(kinds), sac=sac, **fields)
