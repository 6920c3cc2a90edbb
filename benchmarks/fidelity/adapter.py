"""The adapter contract (one small class per release) and the offdiff `Algorithm` that runs any adapter.

`ReleaseAlgorithm` is what offdiff's stage runner trains for an official run: it has the offdiff plugin's
config and stages (so both sides resolve the same preset, budget and protocol), and it forwards each step to
the release through its adapter. The release samples its own batches from its own data loader (the data order
is part of the release), fed with the offdiff source's transitions through the d4rl stub; the runner's batch is
not used. Evaluation, logging, the run folder and the DONE marker are the runner's, exactly as for offdiff.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from fidelity import stubs
from fidelity.draws import Draw
from fidelity.release import Checkout
from fidelity.twins import Pairs
from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec, Metrics, Stage
from offdiff.data.buffer import Batch, DeviceBuffer
from offdiff.data.pipeline import prepare
from offdiff.errors import OffdiffError
from offdiff.train.runner import TrainRequest


@dataclasses.dataclass(frozen=True)
class ReleaseData:
    """The offdiff source's transitions as D4RL's `qlearning_dataset` gives them: raw observations and rewards
    (each release applies its own reward processing), actions scaled to [-1, 1] by offdiff's action scaler."""

    arrays: dict[str, np.ndarray]

    @classmethod
    def load(cls, source: str, eval_env: str | None, ref_scores: str | None) -> ReleaseData:
        """The run's data through offdiff's `prepare`, without the config's reward (or observation) transform."""
        buffer = prepare(source, eval_env=eval_env, ref_scores=ref_scores).buffer
        return cls({"observations": buffer.obs.numpy(), "actions": buffer.actions.numpy(),
                    "next_observations": buffer.next_obs.numpy(), "rewards": buffer.rewards.numpy(),
                    "terminals": (1.0 - buffer.not_done).numpy()})


class Adapter:
    """Drives one release's own classes; subclasses are small (fidelity/adapters/)."""

    release: ClassVar[str]  # the release's name, e.g. "dtql"
    algo: ClassVar[str]  # the offdiff plugin it is compared with
    commit: ClassVar[str]  # the pinned commit
    repository: ClassVar[str]
    metric_names: ClassVar[Mapping[str, str]] = {}  # the release's metric name -> offdiff's, where they agree
    needs_cuda: ClassVar[bool] = False  # the release hard-codes CUDA
    same_draws: ClassVar[bool] = False  # the same-draws check is written for it (twin_tensors, step/act_draws)
    table: ClassVar[tuple[str, str] | None] = None  # (file, name) of the release's per-task hyperparameter table
    table_columns: ClassVar[Mapping[str, tuple[str, Callable[[Any], Any]]]] = {}  # column -> (offdiff field, unit)
    diagnostic_policies: ClassVar[tuple[str, ...]] = ()  # the plugin's diagnostic policies the release can act as

    def __init__(self, config: Any, spec: EnvSpec, data: ReleaseData, device: torch.device, seed: int):
        self.config, self.spec, self.data, self.device, self.seed = config, spec, data, device, seed

    @classmethod
    def release_values(cls, task: str) -> dict[str, Any]:
        """Config fields the release hard-codes (for `task`), with the release's value: offdiff's config must
        agree, or the official run could not follow it."""
        return {"obs_transform": "none"}  # no release normalizes observations

    @classmethod
    def check_config(cls, config: AlgorithmConfig, task: str) -> None:
        """One line naming every config field the release cannot follow (before anything is written)."""
        wrong = {k: (getattr(config, k), v) for k, v in cls.release_values(task).items() if getattr(config, k) != v}
        if wrong:
            fields = "; ".join(f"{k}={mine!r} (the release has {theirs!r})" for k, (mine, theirs) in wrong.items())
            raise OffdiffError(f"the {cls.release} release cannot follow this {cls.algo} config: {fields}; drop "
                               "those --set values (or use a task whose preset the release matches)")

    @classmethod
    def check_checkout(cls, checkout: Checkout) -> None:
        """Checks of the release's code beyond its commit (e.g. a documented fix); default: none."""

    def build(self) -> None:
        """Import the release's modules and build its agent (inside `fidelity.release.imported`)."""
        raise NotImplementedError

    def begin_stage(self, stage: str) -> None:
        """Called before the first step of each stage."""

    def step(self, stage: str) -> dict[str, float]:
        """One gradient step of the release; its metrics, named as offdiff names the same quantity."""
        raise NotImplementedError

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions in [-1, 1] for a batch of observations, chosen as the release chooses them at evaluation."""
        raise NotImplementedError

    def diagnostic_act(self, policy: str, obs: np.ndarray) -> np.ndarray:
        """Actions in [-1, 1] of the release's counterpart of the plugin's diagnostic policy `policy` (one of
        `diagnostic_policies`, e.g. its behaviour model acting alone), drawn from torch's global RNG."""
        raise NotImplementedError

    def modules(self) -> dict[str, torch.nn.Module]:
        """The release's networks, saved in offdiff's checkpoint for inspection."""
        return {}

    # -- the same-draws check (same_draws.py) ------------------------------------------------------------------
    # Adapters that set `same_draws` implement twin_tensors, step_draws and act_draws; the other hooks default
    # to a release that draws its batch's rows every step and nothing when a stage starts.
    @classmethod
    def check_same_draws(cls, config: AlgorithmConfig) -> None:
        """One line if `config` has a setting under which the two sides cannot draw alike (default: none)."""

    def serve_batches(self) -> None:
        """Called once before the check: from now on each step's batch comes from the step's served draws (for a
        release whose loader draws once per epoch); default: the release already draws its rows every step."""

    def twin_tensors(self, algo: Algorithm) -> dict[str, Pairs]:
        """Per network: pairs (the release's tensor, the offdiff plugin's tensor in the release's layout), for the
        networks the release has now (asked again after each stage starts)."""
        raise NotImplementedError

    def stage_draws(self, stage: str, draws: list[Draw]) -> list[Draw]:
        """offdiff's draws when `stage` starts (`begin_stage`), in the order the release's start draws them;
        default: neither side draws there."""
        return self.expect_draws(draws, [], f"start of {stage}")

    def step_draws(self, stage: str, draws: list[Draw]) -> list[Draw]:
        """offdiff's draws of one step of `stage` (the batch's rows first, then `update`'s) in the order the release
        draws them."""
        raise NotImplementedError

    def act_draws(self, draws: list[Draw]) -> list[Draw]:
        """offdiff's draws of `act` on one state, in the order the release's acting draws."""
        raise NotImplementedError

    def expect_draws(self, draws: list[Draw], kinds: list[str], where: str) -> list[Draw]:
        """`draws`, after checking their kinds against the layout the adapter expects of offdiff."""
        if [d.kind for d in draws] != kinds:
            raise OffdiffError(f"same draws: offdiff's {where} drew {[d.kind for d in draws]}, the {self.release} "
                               f"layout expects {kinds}")
        return draws

    def renamed(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return {self.metric_names.get(k, k): float(v) for k, v in metrics.items()}


def seed_everything(seed: int) -> None:
    """What the releases' scripts do before building anything: torch, numpy and random from the run seed."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class ReleaseAlgorithm(Algorithm):
    """An official release as an offdiff algorithm; `bind` makes the class for one adapter and plugin."""

    adapter_cls: ClassVar[type[Adapter]]
    plugin: ClassVar[type[Algorithm]]
    request: ClassVar[TrainRequest]  # the run's request: its data source, eval env and reference scores

    @classmethod
    def bind(cls, adapter_cls: type[Adapter], plugin: type[Algorithm], request: TrainRequest) -> type[ReleaseAlgorithm]:
        name = f"{adapter_cls.release}-official"
        return type(f"Official_{adapter_cls.release}", (cls,), {
            "name": name, "display_name": name, "Config": plugin.Config, "presets": plugin.presets,
            "adapter_cls": adapter_cls, "plugin": plugin, "request": request,
        })

    def __init__(self, config: AlgorithmConfig, spec: EnvSpec, device: torch.device, generator: torch.Generator):
        super().__init__(config, spec, device, generator)
        self.adapter: Adapter | None = None

    @classmethod
    def stage_plan(cls, config: AlgorithmConfig) -> list[Stage]:
        """The plugin's stages (names, lengths, batches), without its caching and the diagnostics that need the
        plugin's own networks: a stage keeps its diagnostic policy where the adapter can act as it."""
        return [dataclasses.replace(s, cacheable=False, config_keys=(), q_calibration=False,
                                    diagnostic_policy=s.diagnostic_policy if s.diagnostic_policy
                                    in cls.adapter_cls.diagnostic_policies else None)
                for s in cls.plugin.stage_plan(config)]

    def build_release(self) -> Adapter:
        """The release's agent, built once: at the first stage, or before a finished run's weights are loaded
        into it. It reads the run's source itself, without the config's transforms."""
        if self.adapter is None:
            seed = self.generator.initial_seed()
            r = self.request
            release_data = ReleaseData.load(r.source, r.eval_env, r.ref_scores)
            self.adapter = self.adapter_cls(self.config, self.spec, release_data, self.device, seed)
            stubs.feed(self.adapter.data.arrays)
            seed_everything(seed)
            try:
                self.adapter.build()
            except ImportError as exc:
                raise OffdiffError(f"the {self.adapter.release} release does not import here ({exc}); install its "
                                   "requirements (benchmarks/fidelity/README.md)") from None
        return self.adapter

    def begin_stage(self, stage: str, data: DeviceBuffer) -> None:
        self.build_release().begin_stage(stage)

    def update(self, stage: str, batch: Batch, step: int) -> Metrics:
        assert self.adapter is not None
        return {k: torch.tensor(v) for k, v in self.adapter.step(stage).items()}

    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The release's action choice under its own (global) RNG, forked and seeded from the run's eval generator,
        so evaluating neither changes the training that follows nor depends on it."""
        assert self.adapter is not None
        return self._released(self.adapter.act, obs, generator)

    def diagnostic_act(self, policy: str, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The release's counterpart of the plugin's diagnostic policy, under the same forked RNG as `act`."""
        adapter = self.adapter
        assert adapter is not None
        return self._released(lambda states: adapter.diagnostic_act(policy, states), obs, generator)

    def _released(self, choose: Callable[[np.ndarray], np.ndarray], obs: torch.Tensor,
                  generator: torch.Generator | None) -> torch.Tensor:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device)) if generator else 0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            actions = choose(obs.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(actions, dtype=np.float32).reshape(len(obs), -1), device=obs.device)

    def modules(self) -> Mapping[str, torch.nn.Module]:
        return self.adapter.modules() if self.adapter is not None else {}

    def compile_update(self, stage: str) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"modules": {k: m.state_dict() for k, m in self.modules().items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        raise OffdiffError("an official release run does not resume from a checkpoint (the release's own counters "
                           "and RNG are not saved); move its run folder away to run it again from the start")
