"""The stage runner: one training loop for every algorithm.

It resolves the config (paper defaults, task preset, user overrides), prepares the data on the
training device, then runs the algorithm's stages: sample a batch with the run's generator, one
`update`, metrics accumulated on the device and read every `log_every` steps (no per-step host sync),
evaluation on the protocol's schedule, atomic checkpoints, and a DONE marker at the end. A run with
DONE is never rerun; any other run resumes from its checkpoint. Cacheable stages are stored once per
key and reused by every run that shares it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offdiff.algorithm import Algorithm, EnvSpec, Stage
from offdiff.config import apply_overrides, budget_fields, config_dict, hashed_config, stable_hash
from offdiff.data.pipeline import PreparedData, prepare
from offdiff.data.scores import RefScores
from offdiff.data.sources import DatasetInfo, ResolvedDataset, resolve_dataset
from offdiff.data.tasks import NO_TASK
from offdiff.data.transforms import describe_reward_transform
from offdiff.errors import OffdiffError
from offdiff.eval import TimedAct, evaluation_row
from offdiff.io import atomic_torch_save, atomic_write_json, torch_load
from offdiff.progress import Progress, announce_if_slow
from offdiff.provenance import describe_device, provenance
from offdiff.records import Done, Evaluation, Manifest, Metrics, PolicyDiagnostic, ReusedStage, RunDir, StageReport
from offdiff.registry import get_algorithm, plugins
from offdiff.runtime import ALGORITHM_DRAWS, derive_seed, keep_freed_memory, resolve_device, seed_run
from offdiff.tracking import Tracker, open_tracker
from offdiff.train.compile import AUTO_MIN_STEPS, check_compile_available, compile_steps, resolve_compile
from offdiff.train.diagnostics import ComputeLedger, StageDiagnostics, data_returns
from offdiff.train.protocol import Protocol, default_protocol


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """Everything that names a run. `steps` sets every step-budget field of the config (a quick budget)."""

    algo: str
    source: str
    seed: int = 0
    eval_env: str | None = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    protocol: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    steps: int | None = None
    device: str = "auto"
    runs_root: Path = Path("runs")
    grid: str = "train"
    compile: bool | None = None  # torch.compile the plugin's steps; None: auto (offdiff/train/compile.py)
    task: str | None = None  # the task whose preset applies; None: from the dataset (offdiff.data.tasks); "none"
    ref_scores: str | None = None  # "MIN,MAX" or "d4rl"; None: the dataset's own, or D4RL's for D4RL data
    keep: str = "all"  # "final": once DONE, prune the checkpoint to the final weights (RunDir.keep_final)
    log: tuple[str, ...] = ("tensorboard",)  # live trackers (offdiff/tracking.py); () for none


@dataclasses.dataclass(frozen=True)
class PresetChoice:
    """The task a run is for, how it was chosen, and the preset (if any) with the config keys it set."""

    task: str
    rule: str
    preset: str | None
    keys: dict[str, Any]

    def describe(self) -> str:
        if self.preset is None:
            return f"task {self.task} ({self.rule}): no preset, the paper's defaults"
        keys = ", ".join(f"{k}={v}" for k, v in self.keys.items()) or "nothing"
        return f"task {self.task} ({self.rule}): preset {self.preset} sets {keys}"


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """A request resolved once: its algorithm, dataset (described, not loaded), config, protocol and run folder."""

    request: TrainRequest
    cls: type[Algorithm]
    dataset: ResolvedDataset
    config: Any
    protocol: Protocol
    run_dir: RunDir
    choice: PresetChoice

    @property
    def info(self) -> DatasetInfo:
        return self.dataset.info

    @property
    def ref(self) -> RefScores:
        return self.dataset.ref

    @property
    def stages(self) -> list[Stage]:
        """The run's stages, from its config alone (`Algorithm.stage_plan`): no network is built."""
        return self.cls.stage_plan(self.config)

    def cache_key(self, stage: Stage) -> str:
        """The key of a cacheable stage's artifact, known before any data is loaded: the runner stores and finds the
        artifact under it, and the harness groups the runs that share it (one cache phase per key).

        It holds the algorithm, the source with the dataset's size and action bounds, the named transforms, the
        stage (without the diagnostics it declares), the config values the stage names in `config_keys`, the
        seed, and how the algorithm's generator is seeded (`ALGORITHM_DRAWS`: artifacts from runs whose generator
        took the run seed itself are not reused).
        """
        info, config = self.info, self.config
        return stable_hash({
            "algo": self.request.algo, "source": self.request.source, "seed": self.request.seed,
            "draws": ALGORITHM_DRAWS,
            "data": [info.num_transitions, info.num_episodes, info.action_low, info.action_high],
            "transforms": {"obs": config.obs_transform, "reward": config.reward_transform},
            "stage": _cache_stage_key(stage), "config": {k: getattr(config, k) for k in stage.config_keys},
        })

    def describe(self) -> list[str]:
        """What the run chose by rule (task and preset, eval env, reference scores), printed at its start."""
        info, ref = self.info, self.ref
        return [self.choice.describe(), f"eval env {info.eval_env} ({info.eval_env_rule})",
                f"reference scores min {ref.min:g}, max {ref.max:g} ({ref.source})"]


IDENTITY = ("algorithm", "config", "seed", "protocol")  # manifest keys a restart must agree with


def _closest(cls: type[Algorithm], task: str) -> str:
    close = difflib.get_close_matches(task, list(cls.presets), n=3, cutoff=0.4) or sorted(cls.presets)[:3]
    return ", ".join(close) or "none"


def choose_preset(cls: type[Algorithm], info: DatasetInfo, requested: str | None) -> PresetChoice:
    """`--task` (or `none`), else the dataset's task; a non-toy task without a preset is an error, not defaults."""
    how = "pass --task NAME (a grid dataset's task:) to use one, or --task none for the paper's defaults"
    if requested == NO_TASK:
        return PresetChoice(info.task, f"from {info.task_rule}; --task none", None, {})
    if requested is not None:
        if requested not in cls.presets:
            raise OffdiffError(f"unknown --task {requested!r} for {cls.name}; closest presets: "
                               f"{_closest(cls, requested)}; --task none trains with the paper's defaults")
        return PresetChoice(requested, "--task", requested, cls.preset(requested))
    if info.task in cls.presets:
        return PresetChoice(info.task, f"from {info.task_rule}", info.task, cls.preset(info.task))
    if info.task.startswith("toy-"):
        return PresetChoice(info.task, f"from {info.task_rule}", None, {})
    raise OffdiffError(f"no {cls.name} preset for task {info.task!r} (from {info.task_rule}); closest presets: "
                       f"{_closest(cls, info.task)}; {how}")


def resolve_config(cls: type[Algorithm], task: str | None, request: TrainRequest) -> Any:
    """The paper's defaults, then the preset of `task` (None: no preset), then `--steps`, then `--set`."""
    preset = cls.preset(task) if task is not None else {}
    config = apply_overrides(cls.Config(), preset, origin=f"{cls.name} preset for {task}")
    if request.steps is not None:
        step_fields = {name: request.steps for name in budget_fields(config)}
        config = apply_overrides(config, step_fields, origin="--steps")
    return apply_overrides(config, request.overrides)


_SETTLED: dict[tuple, tuple[Any, Any, dict[str, Any], dict[str, Any]]] = {}


def _settle(cls: type[Algorithm], choice: PresetChoice, request: TrainRequest
            ) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The run's config and protocol, with their hashed forms: the same for every seed of a grid cell, so a grid
    resolves them once per cell (resolving and checking a config is most of what planning a run costs)."""
    key = (cls, choice.preset, choice.task, request.steps, json.dumps(request.overrides, sort_keys=True, default=repr),
           json.dumps(request.protocol, sort_keys=True, default=repr))
    if key not in _SETTLED:
        config = resolve_config(cls, choice.preset, request)
        protocol = apply_overrides(default_protocol(choice.task), request.protocol, origin="protocol")
        if len(_SETTLED) >= 4096:
            _SETTLED.clear()
        _SETTLED[key] = (config, protocol, hashed_config(config), dataclasses.asdict(protocol))
    return _SETTLED[key]


def plan(request: TrainRequest, dataset: ResolvedDataset | None = None,
         cls: type[Algorithm] | None = None) -> PlannedRun:
    """Resolve a request to its config and stable run folder, without loading data.

    A grid resolves each of its datasets (`resolve_dataset` of the request's source, eval env and reference scores)
    and algorithms once and passes them in; by default they are resolved here.
    """
    if request.seed < 0:
        raise OffdiffError(f"the seed must be >= 0, got {request.seed}")
    if request.steps is not None and request.steps < 1:
        raise OffdiffError(f"--steps must be >= 1, got {request.steps}")
    cls = cls or get_algorithm(request.algo)
    dataset = dataset or resolve_dataset(request.source, request.eval_env, request.ref_scores)
    if dataset.info.source != request.source:
        raise ValueError(f"dataset {dataset.info.source} given for a request on {request.source}")
    info, ref = dataset.info, dataset.ref
    choice = choose_preset(cls, info, request.task)
    config, protocol, hashed, protocol_dict = _settle(cls, choice, request)
    payload = {"config": hashed, "source": request.source, "eval_env": info.eval_env, "protocol": protocol_dict}
    if request.ref_scores is not None:  # only then: the folders of earlier runs keep their names
        payload["ref_scores"] = dataclasses.asdict(ref)
    slug = info.dataset_id.replace("/", "-")
    path = Path(request.runs_root) / request.grid / request.algo / slug / stable_hash(payload) / f"seed_{request.seed}"
    return PlannedRun(request, cls, dataset, config, protocol, RunDir(path), choice)


class Trainer:
    """Runs one planned run to completion (or to the next kill, after which it resumes)."""

    def __init__(self, planned: PlannedRun, progress: bool = True, stop_after_cacheable: bool = False):
        self.p = planned
        self.run = planned.run_dir
        self.progress = progress
        self.stop_after_cacheable = stop_after_cacheable  # a grid's cache phase: checkpoint, stop, no DONE
        self.tracker = Tracker([], None)  # opened with the run's manifest in _run_locked
        self.device = resolve_device(planned.request.device)
        keep_freed_memory()
        if planned.request.compile:
            check_compile_available(self.device)  # before any data is read

    # -- set-up ------------------------------------------------------------------------------
    def _build(self) -> None:
        p, seed = self.p, self.p.request.seed
        self.data: PreparedData = prepare(p.dataset, obs_transform=p.config.obs_transform,
                                          reward_transform=p.config.reward_transform, device=self.device)
        generator = seed_run(seed, self.device)  # module initialisation, then the algorithm's own stream
        self.sampler = torch.Generator(device=self.device).manual_seed(derive_seed(seed, "sampler"))
        spec = EnvSpec(p.info.obs_dim, p.info.act_dim, p.info.dataset_id, p.choice.task)
        self.algo = p.cls(p.config, spec, self.device, generator)
        self.stages = self.algo.stages()
        self.compiled = resolve_compile(p.request.compile, self.device, sum(s.steps for s in self.stages))
        if self.compiled:
            why = "requested" if p.request.compile else f"auto: >= {AUTO_MIN_STEPS} steps"
            print(f"[{p.request.algo}] torch.compile on ({why}); the first steps of each stage compile",
                  file=sys.stderr)
            compile_steps(self.algo)  # lazily: graphs are built at the first calls
        self.eval_seed = derive_seed(seed, "eval")
        self.diagnostics = StageDiagnostics(self.algo, self.data, p.protocol, self.device, self.eval_seed,
                                            lambda purpose: derive_seed(self.eval_seed, purpose))
        self.compute = ComputeLedger(describe_device(self.device))

    def _manifest(self) -> Manifest:
        p = self.p
        plugin = plugins().get(p.request.algo)
        return Manifest(
            algorithm=p.request.algo,
            plugin=dataclasses.asdict(plugin) if plugin else None,
            config=config_dict(p.config),
            seed=p.request.seed,
            eval_seed=self.eval_seed,
            task=dataclasses.asdict(p.choice),
            dataset={**dataclasses.asdict(p.info), "ref_scores": dataclasses.asdict(self.data.ref),
                     "content_sha256": self.data.content_sha256},
            transforms=self.data.transforms,
            protocol=dataclasses.asdict(p.protocol),
            stages=[dataclasses.asdict(s) for s in self.stages],
            compile=self.compiled,
            data_returns=data_returns(self.data).to_json(),
            provenance=provenance(self.device, plugin.package if plugin else None),
        )

    # -- checkpoints -------------------------------------------------------------------------
    def _save_checkpoint(self, stage_index: int, step: int) -> None:
        self.compute.settle(self.stages[stage_index].name)
        atomic_torch_save(self.run.checkpoint, {
            "compute": self.compute.state(),
            "position": (stage_index, step),
            "algorithm": self.algo.state_dict(),
            "sampler": self.sampler.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        })

    def _restore(self) -> tuple[int, int]:
        state = torch_load(self.run.checkpoint, "checkpoint")
        try:
            self.algo.load_state_dict(state["algorithm"])
            self.sampler.set_state(state["sampler"])
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] is not None:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            position = tuple(state["position"])
            self.compute.load(state.get("compute"))  # None: a checkpoint older than compute accounting
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise OffdiffError(
                f"checkpoint {self.run.checkpoint} does not fit this run ({type(exc).__name__}: {exc}); "
                "move it away to restart the run"
            ) from None
        return position  # type: ignore[return-value]

    def _cache_path(self, stage: Stage) -> Path:
        key = self.p.cache_key(stage)
        return Path(self.p.request.runs_root) / "_cache" / self.p.request.algo / stage.name / f"{key}.pt"

    # -- the loop ----------------------------------------------------------------------------
    def run_all(self) -> dict[str, Any]:
        summary = self.run.done_summary().to_json() if self.run.is_done() else self._train()
        if self.p.request.keep == "final":
            self.run.keep_final()
        return summary

    def _train(self) -> dict[str, Any]:
        self._build()  # data and reference scores first: bad input fails before anything is written
        self.run.lock()
        try:
            return self._run_locked()
        finally:
            self.tracker.close()
            self.run.unlock()

    def _run_locked(self) -> dict[str, Any]:
        if self.run.is_done():  # finished by another process while this one prepared its data
            return self.run.done_summary().to_json()
        manifest = self._manifest()
        if self.run.manifest.exists():
            self.run.check_manifest(manifest, IDENTITY)
            self._check_same_data(self.run.read_manifest().dataset.get("content_sha256"), f"run {self.run.path}",
                                  "move the run folder away, or train into another --runs-dir")
        else:
            atomic_write_json(self.run.manifest, manifest.to_json())
        position = self._restore() if self.run.checkpoint.exists() else (0, 0)
        self.run.rewind_logs(position)  # rows written after the state restarted from (all of them, without one)
        self.tracker = open_tracker(self.p.request.log, self.run, manifest, name="/".join(self.run.path.parts[-5:]))
        reward = self.data.transforms["reward"]
        for line in [*self.p.describe(), describe_reward_transform(reward["name"], reward["params"])]:
            if line:  # stdout: stderr keeps to progress and the one line of an error
                print(f"[{self.p.request.algo}] {line}", flush=True)
        started = time.time()
        for index, stage in enumerate(self.stages):
            if self.stop_after_cacheable and not stage.cacheable:
                return {"run_dir": str(self.run.path), "stopped_before": stage.name}
            if (index, stage.steps) <= position:
                continue
            start = position[1] if index == position[0] else 0
            if stage.cacheable and start == 0 and self._load_cached(stage):
                self.compute.begin()
                self._diagnose(index, stage)
                self._save_checkpoint(index, stage.steps)
                continue
            self._run_stage(index, stage, start)
            if stage.cacheable:
                atomic_torch_save(self._cache_path(stage), {
                    "algorithm": self.algo.stage_artifact(stage.name), "sampler": self.sampler.get_state(),
                    "torch_rng": torch.get_rng_state(), "compute": self.compute.state()["stages"][stage.name],
                    "content_sha256": self.data.content_sha256,
                })
        summary = Done.summarize(str(self.run.path), time.time() - started, {s.name: s.steps for s in self.stages},
                                 self.compute.summary(), self.run.evaluations(), self.run.diagnostic_rows()).to_json()
        atomic_write_json(self.run.done_marker, summary)
        return summary

    def _check_same_data(self, recorded: str | None, what: str, remedy: str) -> None:
        """`what` was trained on this run's data, if it recorded a content digest (older runs did not); else an
        error: a dataset written again under the same name (collected again, on another CPU) is other data."""
        now = self.data.content_sha256
        if recorded is not None and recorded != now:
            raise OffdiffError(
                f"{what} was trained on other data under the name {self.p.info.dataset_id} (content sha256 "
                f"{recorded[:12]}... then, {now[:12]}... now: the dataset was written again); {remedy}")

    def _load_cached(self, stage: Stage) -> bool:
        path = self._cache_path(stage)
        if not path.exists():
            return False
        artifact = torch_load(path, f"cached {stage.name} artifact")
        self._check_same_data(artifact.get("content_sha256"), f"cached {stage.name} artifact {path}",
                              "delete it to train the stage again")
        self.algo.load_stage_artifact(stage.name, artifact["algorithm"])
        self.sampler.set_state(artifact["sampler"])
        torch.set_rng_state(artifact["torch_rng"])
        self.compute.reused(stage.name, artifact.get("compute"))
        self.run.append(self.run.metrics, ReusedStage(stage.name, self.stages.index(stage), stage.steps,
                                                      str(path)).to_json())
        print(f"[{self.p.request.algo}] reused cached {stage.name} artifact {path}", file=sys.stderr)
        return True

    def _run_stage(self, index: int, stage: Stage, start: int) -> None:
        protocol = self.p.protocol
        self.compute.begin()
        setup = f"[{self.p.request.algo}:{stage.name}] stage set-up (begin_stage)"
        with announce_if_slow(setup, enabled=self.progress):
            self.algo.begin_stage(stage.name, self.data.buffer)
        bar = Progress(stage.steps, f"{self.p.request.algo}:{stage.name}", enabled=self.progress, initial=start)
        sums: dict[str, torch.Tensor] = {}
        count, tick = 0, time.perf_counter()
        try:
            for step in range(start, stage.steps):
                batch = self.data.buffer.sample(stage.batch_size, self.sampler)
                metrics = self.algo.update(stage.name, batch, step)
                for k, v in metrics.items():
                    sums[k] = sums[k] + v if k in sums else v.detach().float().clone()
                count += 1
                done = step + 1
                logged = None
                if done % protocol.log_every == 0 or done == stage.steps:
                    logged = self._log(index, stage, done, sums, count, time.perf_counter() - tick)
                    sums, count, tick = {}, 0, time.perf_counter()
                bar.update(1, None if logged is None else {**logged.values, "steps_averaged": logged.steps_averaged})
                if stage.evaluate and (done % protocol.eval_every == 0 or done == stage.steps):
                    scores = self._evaluate(index, stage, done).scores
                    bar.note(f"[{bar.desc}] evaluation at step {done}: normalized score {scores.normalized_mean:.1f} "
                             f"± {scores.normalized_std:.1f} over {scores.episodes} episodes")
                if done == stage.steps:
                    self._diagnose(index, stage)
                if done % protocol.checkpoint_every == 0 or done == stage.steps:
                    self._save_checkpoint(index, done)
        finally:
            bar.close()

    def _log(self, index: int, stage: Stage, step: int, sums: dict[str, torch.Tensor], count: int,
             seconds: float) -> Metrics:
        names = list(sums)
        values = torch.stack([sums[k] for k in names]).cpu().tolist() if names else []  # the one host sync
        means = {k: v / count for k, v in zip(names, values, strict=True)}
        bad = [k for k, v in means.items() if not np.isfinite(v)]
        if bad:
            raise OffdiffError(f"training diverged at {stage.name} step {step}: non-finite {bad}")
        logged = Metrics(stage.name, index, step, means, steps_per_s=count / max(seconds, 1e-9), steps_averaged=count)
        self.run.append(self.run.metrics, logged.to_json())
        self.tracker.log(logged)
        return logged

    def _evaluate(self, index: int, stage: Stage, step: int) -> Evaluation:
        generator = torch.Generator(device=self.device).manual_seed(derive_seed(self.eval_seed, f"{index}:{step}"))
        act = TimedAct(lambda obs: self.algo.act(obs, generator=generator))
        with self.compute.timing(stage.name, "eval_s"):
            scores = evaluation_row(act, self.data, episodes=self.p.protocol.eval_episodes,
                                    num_envs=self.p.protocol.eval_envs, seed=self.eval_seed, device=self.device)
        self.compute.acted(stage.name, act.actions_per_s)
        evaluation = Evaluation(stage.name, index, step, scores)
        self.run.append(self.run.evals, evaluation.to_json())
        self.tracker.log(evaluation)
        return evaluation

    def _diagnose(self, index: int, stage: Stage) -> None:
        """The stage's diagnostics (offdiff/train/diagnostics.py), before its last checkpoint: rewound with it."""
        with self.compute.timing(stage.name, "diagnostics_s"):
            rows = self.diagnostics.after(index, stage)
        for row in rows:
            self.run.append(self.run.diagnostics, row.to_json())
            if isinstance(row, PolicyDiagnostic):
                print(f"[{self.p.request.algo}] diagnostic: {row.policy} after {stage.name}: normalized score "
                      f"{row.scores.normalized_mean:.1f} ± {row.scores.normalized_std:.1f}", file=sys.stderr)
            elif isinstance(row, StageReport):
                values = ", ".join(f"{key} {value:.4g}" for key, value in row.values.items())
                print(f"[{self.p.request.algo}] report after {stage.name}: {values}", file=sys.stderr)


def _cache_stage_key(stage: Stage) -> dict[str, Any]:
    """The stage's fields that make its cached artifact: the diagnostics and benchmark hints it declares do not."""
    return {f.name: getattr(stage, f.name) for f in dataclasses.fields(stage)
            if f.name not in ("diagnostic_policy", "q_calibration", "candidate_set")}


def train(request: TrainRequest, progress: bool = True, stop_after_cacheable: bool = False) -> dict[str, Any]:
    """Plan and run (or resume, or skip if DONE) one run; returns its summary.

    `stop_after_cacheable` runs only the leading cacheable stages (storing their artifacts) and stops at the
    first other stage, checkpointed and without DONE; the same run started again continues from there.
    """
    return Trainer(plan(request), progress=progress, stop_after_cacheable=stop_after_cacheable).run_all()
