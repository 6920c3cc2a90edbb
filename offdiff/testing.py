"""The conformance suite every algorithm plugin must pass: `check_algorithm(Cls)`.

It builds the plugin on a small random dataset and checks: the config is a frozen dataclass whose
defaults construct; `stages()` agrees with the class's `stage_plan(config)`; every stage runs and reports
finite scalar metrics; `act` returns actions of the right shape inside [-1, 1] and is deterministic under a
fixed generator; so do the stages' diagnostic
policies and stage reports, which leave the training state and torch's random stream untouched, and
`critic_q` gives finite (N,) values where a stage declares `q_calibration`; `state_dict` round-trips; and
resume equivalence: N steps straight equal k steps, save to bytes, restore into a fresh instance,
N - k steps, to the bit (on CPU), in every stage; a cacheable stage's artifact, loaded into a fresh
instance, continues exactly like the run that produced it.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec, Stage
from offdiff.config import apply_overrides, budget_fields
from offdiff.data.buffer import DeviceBuffer
from offdiff.data.transitions import random_transitions
from offdiff.runtime import seed_run


class _Harness:
    """Builds instances of the plugin under test on one dataset, with the suite's generators."""

    def __init__(self, cls: type[Algorithm], overrides: Mapping[str, Any], steps: int, device: str):
        self.cls, self.device = cls, torch.device(device)
        self.data = DeviceBuffer(random_transitions(), self.device)
        self.spec = EnvSpec(obs_dim=5, act_dim=3, dataset_id="conformance/random-v0", task="conformance")
        base = cls.Config()
        step_fields = {name: steps for name in budget_fields(base)}
        self.config = apply_overrides(apply_overrides(base, step_fields), overrides)

    def build(self, seed: int = 0) -> Algorithm:
        return self.cls(self.config, self.spec, self.device, seed_run(seed, self.device))

    def sampler(self) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(1234)

    def drive(self, algo: Algorithm, sampler: torch.Generator, start: tuple[int, int], stop: tuple[int, int]):
        """Run the stage loop from position `start` (stage index, step) up to `stop`; return the metrics."""
        seen = []
        for index, stage in enumerate(algo.stages()):
            first = start[1] if index == start[0] else 0
            last = stop[1] if index == stop[0] else stage.steps
            if index < start[0] or index > stop[0] or first >= last:
                continue
            algo.begin_stage(stage.name, self.data)
            for step in range(first, last):
                seen.append(algo.update(stage.name, self.data.sample(stage.batch_size, sampler), step))
        return seen


def _roundtrip(state: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def _assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape, f"{where}: shape differs"
        assert torch.equal(a, b), f"{where}: values differ"
    elif isinstance(a, Mapping):
        assert set(a) == set(b), f"{where}: keys differ: {set(a) ^ set(b)}"
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _training_state(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Everything stateful reachable from `obj`'s attributes, by attribute path: modules, optimizers and schedulers
    (their state dicts), generators (their states), tensors, and numbers (counters)."""
    found: dict[str, Any] = {}
    for name, value in vars(obj).items():
        key = f"{prefix}{name}"
        if isinstance(value, torch.Generator):
            found[key] = value.get_state()
        elif isinstance(value, (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
            found[key] = value.state_dict()
        elif isinstance(value, (torch.Tensor, int, float)):
            found[key] = value
        elif depth < 2 and hasattr(value, "__dict__") and not isinstance(value, (type, torch.device)):
            found.update(_training_state(value, f"{key}.", depth + 1))
    return found


def _same(a: Any, b: Any) -> bool:
    try:
        _assert_same_state(a, b)
    except AssertionError:
        return False
    return True


def _assert_same_training(a: Algorithm, b: Algorithm, what: str) -> None:
    """Two instances that should be in the same state are; else name every attribute that differs, and whether
    `state_dict()` covers it (a generator, optimizer, scheduler or counter left out of it is the usual cause)."""
    mine, theirs = _training_state(a), _training_state(b)
    differ = [k for k in sorted(set(mine) | set(theirs)) if k not in mine or k not in theirs or not _same(mine[k],
                                                                                                        theirs[k])]
    if not differ:
        return
    saved = {id(v) for group in ("modules", "optimizers", "schedulers") for v in getattr(a, group)().values()}
    saved.add(id(a.generator))
    saved_tensors = {id(t) for m in a.modules().values() for t in m.state_dict(keep_vars=True).values()}

    def is_saved(value: Any) -> bool:  # saved itself, or a module whose state all lies in saved modules (a wrapper)
        own = value.state_dict(keep_vars=True).values() if isinstance(value, torch.nn.Module) else ()
        return id(value) in saved or bool(own) and all(id(t) in saved_tensors for t in own)

    unsaved = [k for k in differ if "." not in k and not is_saved(getattr(a, k, None))]
    hint = (f"not in state_dict(): {', '.join(unsaved)} (save and restore it)" if unsaved else
            "every differing attribute is in state_dict(): something it holds is not restored exactly")
    raise AssertionError(f"{what}: not exact; differs: {', '.join(differ)}; {hint}")


def _check_diagnostics(algo: Algorithm, stages: list[Stage], obs: torch.Tensor, data: DeviceBuffer) -> None:
    """What the stages declare for the suite's diagnostics (offdiff/train/diagnostics.py) works and changes nothing."""
    before, rng = _roundtrip(algo.state_dict()), torch.get_rng_state()
    for stage in stages:
        reports = [dict(algo.stage_report(stage.name, data, torch.Generator(obs.device).manual_seed(7)))
                   for _ in range(2)]
        where = f"stage_report after {stage.name!r}"
        for key, value in reports[0].items():
            assert isinstance(key, str) and isinstance(value, (int, float)), f"{where}: {key!r} is not a named number"
            assert np.isfinite(value), f"{where}: {key} = {value} is not finite"
        assert reports[0] == reports[1], f"{where}: not deterministic under a fixed generator"
        if stage.diagnostic_policy is not None:
            runs = [algo.diagnostic_act(stage.diagnostic_policy, obs, torch.Generator(obs.device).manual_seed(5))
                    for _ in range(2)]
            where = f"diagnostic policy {stage.diagnostic_policy!r} of stage {stage.name!r}"
            assert runs[0].shape == (obs.shape[0], algo.spec.act_dim), f"{where}: shape {tuple(runs[0].shape)}"
            assert torch.isfinite(runs[0]).all() and runs[0].abs().max() <= 1.0, f"{where}: actions outside [-1, 1]"
            assert torch.equal(*runs), f"{where}: not deterministic under a fixed generator"
        if stage.q_calibration:
            actions = torch.rand(obs.shape[0], algo.spec.act_dim, device=obs.device,
                                 generator=torch.Generator(obs.device).manual_seed(6)) * 2 - 1
            q = algo.critic_q(obs, actions)
            assert q.shape == (obs.shape[0],) and torch.isfinite(q).all(), f"critic_q: shape {tuple(q.shape)} or NaN"
            assert 0.0 <= algo.q_discount() <= 1.0, f"q_discount() = {algo.q_discount()} is not in [0, 1]"
    _assert_same_state(before, algo.state_dict(), "the diagnostics must leave the training state as it was")
    assert torch.equal(rng, torch.get_rng_state()), "the diagnostics must not draw from torch's global random stream"


def check_algorithm(
    cls: type[Algorithm], overrides: Mapping[str, Any] | None = None, steps: int = 6, device: str = "cpu"
) -> None:
    """Raise AssertionError with a precise message if `cls` breaks the plugin contract.

    `overrides` shrink the config for speed (e.g. hidden sizes, batch sizes; default: the plugin's declared
    `smoke_config`); `steps` is used for every step-budget field (declared with `offdiff.config.budget`).
    Resume equivalence is checked to the bit, which holds on CPU.
    """
    assert dataclasses.is_dataclass(cls.Config) and issubclass(cls.Config, AlgorithmConfig), (
        "Config must be a dataclass subclassing offdiff.algorithm.AlgorithmConfig")
    assert cls.Config.__dataclass_params__.frozen, "Config must be frozen"
    assert isinstance(cls.name, str) and cls.name, "the class needs a non-empty `name`"
    assert isinstance(cls.display_name, str) and cls.display_name, "`display_name` must be a non-empty string"
    assert budget_fields(cls.Config), (
        "declare the stage lengths with offdiff.config.budget(...) so that `--steps` and this suite can set them")
    h = _Harness(cls, cls.smoke_config if overrides is None else overrides, steps, device)

    # Stages run and report finite scalar metrics.
    algo = h.build()
    stages = algo.stages()
    assert stages and len({s.name for s in stages}) == len(stages), "stages must be non-empty with unique names"
    assert stages == cls.stage_plan(h.config), (
        "stages() must equal stage_plan(config): the harness plans a grid's stages and cache keys from stage_plan")
    end = (len(stages) - 1, stages[-1].steps)
    metrics = h.drive(algo, h.sampler(), (0, 0), end)
    assert len(metrics) == sum(s.steps for s in stages), "every step must return metrics"
    for row in metrics:
        assert row, "update() must report at least one metric"
        for key, value in row.items():
            assert isinstance(value, torch.Tensor) and value.numel() == 1, f"metric {key} must be a 0-d tensor"
            assert not value.requires_grad, f"metric {key} must be detached"
            assert np.isfinite(float(value)), f"metric {key} is not finite: {float(value)}"

    # act: shape, bounds (also far outside the data, where an unsquashed output leaves the box), determinism.
    obs = torch.randn(7, h.spec.obs_dim, device=h.device)
    first = algo.act(obs, generator=torch.Generator(h.device).manual_seed(5))
    again = algo.act(obs, generator=torch.Generator(h.device).manual_seed(5))
    assert first.shape == (7, h.spec.act_dim), f"act returned shape {tuple(first.shape)}"
    for scale in (1.0, 10.0, 1000.0):
        actions = first if scale == 1.0 else algo.act(scale * obs, generator=torch.Generator(h.device).manual_seed(5))
        worst = actions.abs().max().item()
        assert torch.isfinite(actions).all() and worst <= 1.0, (
            f"actions must lie in [-1, 1] (squash them, e.g. tanh or clamp): got |a| = {worst:.4g} for observations "
            f"scaled by {scale:g}")
    assert torch.equal(first, again), "act must be deterministic under a fixed generator"
    _check_diagnostics(algo, stages, obs, h.data)

    # state_dict round-trip into an instance built with another seed.
    other = h.build(seed=99)
    other.load_state_dict(_roundtrip(algo.state_dict()))
    _assert_same_state(algo.state_dict(), other.state_dict(), "state_dict round-trip")
    assert torch.equal(other.act(obs, generator=torch.Generator(h.device).manual_seed(5)), first), (
        "a restored instance must act exactly like the original")

    # Resume equivalence inside every stage: straight vs. k steps, save, restore, the rest.
    for index, stage in enumerate(stages):
        k = max(1, stage.steps // 2)
        straight, sampler = h.build(), h.sampler()
        h.drive(straight, sampler, (0, 0), end)
        first_half, sampler = h.build(), h.sampler()
        h.drive(first_half, sampler, (0, 0), (index, k))
        saved = _roundtrip({"algo": first_half.state_dict(), "sampler": sampler.get_state(),
                            "rng": torch.get_rng_state()})
        resumed, sampler = h.build(seed=7), h.sampler()
        resumed.load_state_dict(saved["algo"])
        sampler.set_state(saved["sampler"])
        torch.set_rng_state(saved["rng"])
        h.drive(resumed, sampler, (index, k), end)
        _assert_same_training(straight, resumed, f"resume in stage {stage.name!r} at step {k}")

    # A cacheable stage's artifact continues exactly like the run that produced it.
    for index, stage in enumerate(stages):
        if not stage.cacheable:
            continue
        producer, sampler = h.build(), h.sampler()
        h.drive(producer, sampler, (0, 0), (index, stage.steps))
        artifact = _roundtrip({"algo": producer.stage_artifact(stage.name), "sampler": sampler.get_state(),
                               "rng": torch.get_rng_state()})
        h.drive(producer, sampler, (index + 1, 0), end)
        consumer, sampler = h.build(), h.sampler()
        consumer.load_stage_artifact(stage.name, artifact["algo"])
        sampler.set_state(artifact["sampler"])
        torch.set_rng_state(artifact["rng"])
        h.drive(consumer, sampler, (index + 1, 0), end)
        _assert_same_state(producer.state_dict()["modules"], consumer.state_dict()["modules"],
                           f"cached {stage.name!r} artifact reused")
