"""The plugin contract: what an algorithm gives the suite, and what the suite owns.

An algorithm is a class with a typed, frozen config dataclass (defaults = the paper's), built from an
`EnvSpec`, a device and a torch generator. It declares its stages, does ONE gradient step per
`update(stage, batch, step)`, answers `act(obs)` batched, and round-trips `state_dict` /
`load_state_dict` with everything (modules, optimizers, schedulers, EMA, targets, its generator).

The suite owns data loading and transforms, the batch sampler, observation normalization and action
scaling at evaluation (the algorithm sees normalized observations and actions in [-1, 1]), the eval
schedule, seeds, score normalization, checkpoints, resume, logging and timing.

Stage diagnostics (offdiff/train/diagnostics.py): a stage may name a `diagnostic_policy` (e.g. the behaviour
model after its pretraining), which the suite evaluates once the stage ends through the same evaluation path
and episodes as the headline score, by calling `diagnostic_act(policy, obs, generator)`; and a stage that
trains a critic may set `q_calibration`, after which the suite compares `critic_q` on a fixed subset of
dataset transitions with their discounted returns-to-go (discount `q_discount()`). After every stage the
suite also asks `stage_report(stage, data, generator)` for named scalars the plugin alone can measure (EDA:
how far its behaviour energy prefers the data's actions; how many of π_θ's samples leave the action box);
none by default. All are logged to the run's `diagnostics.jsonl`, never mixed with the headline evaluations.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from offdiff.config import check_config, field
from offdiff.data.buffer import Batch, DeviceBuffer


@dataclasses.dataclass(frozen=True)
class AlgorithmConfig:
    """Fields every algorithm config has: the named data transforms the suite applies for it.

    A plugin's config subclasses this and declares each field with `offdiff.config.field(default, doc, check)`
    (or `budget(default, doc)` for a stage length), so `offdiff algos NAME` documents it and every value is
    range-checked wherever it comes from (preset, `--steps`, `--set`, a grid).
    """

    reward_transform: str = field("none", "named reward transform applied to the dataset (offdiff/data/transforms.py)")
    obs_transform: str = field("none", "named observation transform, the same at training and evaluation")

    def __post_init__(self) -> None:
        check_config(self, type(self).__name__)  # every field in its declared range, however the config is made


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What an algorithm is built for: dimensions and the dataset it trains on."""

    obs_dim: int
    act_dim: int
    dataset_id: str
    task: str


@dataclasses.dataclass(frozen=True)
class Stage:
    """One phase of training, run by the suite's stage runner.

    `cacheable` stages produce an artifact that depends only on (dataset, transforms, the config fields
    named in `config_keys`, seed), so every run sharing that key can reuse it. `evaluate` says whether
    the policy is evaluated on the suite's schedule during this stage. `diagnostic_policy` names a policy
    (`Algorithm.diagnostic_act`) the suite evaluates once after the stage ends; `q_calibration` says the stage
    trains the critic of `Algorithm.critic_q`, whose Q the suite compares with the data's returns after it.
    `candidate_set` says that `begin_stage` builds a set of candidates per dataset state (EDA's alignment set),
    whose cost the speed benchmark times in states/s; it is not part of the stage's cache key.
    """

    name: str
    steps: int
    batch_size: int
    evaluate: bool = True
    cacheable: bool = False
    config_keys: tuple[str, ...] = ()
    diagnostic_policy: str | None = None
    q_calibration: bool = False
    candidate_set: bool = False


Metrics = dict[str, torch.Tensor]


class Algorithm(ABC):
    """Base class of every offdiff algorithm plugin."""

    name: ClassVar[str]
    display_name: ClassVar[str]  # how tables and figures name it, e.g. "Diffusion-QL"; default: `name`
    Config: ClassVar[type[AlgorithmConfig]]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}  # task key -> the paper's config for that task
    # Config overrides (widths, batch and candidate sizes) that make the plugin small enough to build and step in
    # seconds on a CPU: `offdiff.testing.check_algorithm` uses them by default, and the suite's conformance,
    # compiled-equals-eager and host-sync tests run every registered plugin with them (step budgets set apart).
    smoke_config: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "display_name" not in cls.__dict__ and isinstance(cls.__dict__.get("name"), str):
            cls.display_name = cls.name

    def __init__(self, config: AlgorithmConfig, spec: EnvSpec, device: torch.device, generator: torch.Generator):
        self.config = config
        self.spec = spec
        self.device = torch.device(device)
        self.generator = generator

    @classmethod
    def preset(cls, task: str) -> dict[str, Any]:
        """Config overrides that reproduce the paper's setting for a D4RL-style task key (e.g. `hopper-medium`)."""
        return dict(cls.presets.get(task, {}))

    @classmethod
    @abstractmethod
    def stage_plan(cls, config: Any) -> list[Stage]:
        """The training stages for `config`, in order: a function of the config alone, so the harness plans a grid
        (stage lengths, cache keys) without building any network."""

    def stages(self) -> list[Stage]:
        """This instance's stages: `stage_plan(self.config)` (the conformance suite checks that an override agrees)."""
        return type(self).stage_plan(self.config)

    def begin_stage(self, stage: str, data: DeviceBuffer) -> None:
        """Called before the first step of a stage (also after a resume in the middle of it)."""

    @abstractmethod
    def update(self, stage: str, batch: Batch, step: int) -> Metrics:
        """One gradient step. Returns detached 0-d tensors; the suite reads them only every k steps."""

    @abstractmethod
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions in [-1, 1] for a batch of normalized observations (N, obs_dim) -> (N, act_dim)."""

    def diagnostic_act(self, policy: str, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Actions in [-1, 1] of the diagnostic policy `policy` that a stage names (e.g. sampling the behaviour
        model). Draw only from `generator` and leave the training state as it was: the run continues bit-exact."""
        raise NotImplementedError(f"{self.name} declares diagnostic policy {policy!r} but has no diagnostic_act")

    def stage_report(self, stage: str, data: DeviceBuffer, generator: torch.Generator) -> Mapping[str, float]:
        """Named finite scalars measured after `stage` ends, on the training data (normalized observations, actions
        in [-1, 1]); default: none. Draw only from `generator` and leave the training state as it was."""
        return {}

    def critic_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(N,) the critic's estimate of Q(s, a), the one the algorithm acts or trains with, for stages that set
        `q_calibration`; deterministic, in the units of the (transformed) training rewards."""
        raise NotImplementedError(f"{self.name} declares q_calibration but has no critic_q")

    def q_discount(self) -> float:
        """γ of `critic_q`'s returns; default: the config's `discount` field."""
        return float(self.config.discount)  # type: ignore[attr-defined]

    @abstractmethod
    def modules(self) -> Mapping[str, torch.nn.Module]:
        """Every module with state (networks, targets, EMA copies), by name."""

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        """Every optimizer, by name."""
        return {}

    def schedulers(self) -> Mapping[str, Any]:
        """Every LR scheduler, by name."""
        return {}

    def compile_update(self, stage: str) -> bool:
        """Whether the suite may torch.compile `update` for `stage` as a whole, when a run asks for compiling.

        Say False for a stage that differentiates twice (create_graph: compiled graphs have no double backward)
        or draws from the global random stream (dropout: a compiled graph draws other numbers). Default: True.
        """
        return True

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training bit-for-bit."""
        return {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers().items()},
            "generator": self.generator.get_state(),
        }

    def stage_artifact(self, stage: str) -> dict[str, Any]:
        """What a cacheable stage produced, stored once and shared by every run with the same key."""
        return self.state_dict()

    def load_stage_artifact(self, stage: str, artifact: Mapping[str, Any]) -> None:
        self.load_state_dict(artifact)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for group, owners in (
            ("modules", self.modules()),
            ("optimizers", self.optimizers()),
            ("schedulers", self.schedulers()),
        ):
            missing = set(owners) ^ set(state[group])
            if missing:
                raise KeyError(f"{group} do not match the checkpoint: {sorted(missing)}")
            for key, owner in owners.items():
                owner.load_state_dict(state[group][key])
        self.generator.set_state(state["generator"])
