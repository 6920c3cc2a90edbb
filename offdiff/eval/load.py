"""Using a trained run: `load_run(path)` rebuilds the algorithm with its trained weights, ready to act.

Everything comes from the run folder: the algorithm and resolved config from the manifest, the observation
normalization and action scaling it trained with (the manifest's transforms, so no dataset is read), the
weights from `checkpoint.pt` (or from `weights.pt`, what `--keep final` leaves), and the evaluation env from
the dataset source. `TrainedRun.evaluate` runs the suite's evaluation again; by default on the episodes,
seeds and acting generator of the run's last evaluation, which it then reproduces on CPU.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec
from offdiff.config import apply_overrides
from offdiff.data.base import EnvFactory
from offdiff.data.scores import RefScores, normalized_score
from offdiff.data.sources import resolve
from offdiff.data.transforms import ActionScaler, ObsNormalizer
from offdiff.errors import OffdiffError
from offdiff.eval.evaluate import evaluate
from offdiff.io import torch_load
from offdiff.records import Manifest, RunDir, Scores
from offdiff.registry import get_algorithm
from offdiff.runtime import algorithm_generator, derive_seed, resolve_device


@dataclasses.dataclass(frozen=True)
class EvalResult:
    returns: np.ndarray
    normalized: np.ndarray
    lengths: list[int]
    seeds: list[int]

    @property
    def scores(self) -> Scores:
        """The scores as an evaluation records them (without the per-episode normalized scores)."""
        return Scores(returns=self.returns.tolist(), mean_return=float(self.returns.mean()),
                      normalized_mean=float(self.normalized.mean()), normalized_std=float(self.normalized.std()),
                      lengths=self.lengths, seeds=self.seeds)

    @property
    def summary(self) -> dict[str, Any]:
        return {"episodes": len(self.returns), **self.scores.to_json()}


@dataclasses.dataclass
class TrainedRun:
    """A run's algorithm with its trained weights, and what the suite wraps around it to act in the env."""

    path: Path
    manifest: Manifest
    algorithm: Algorithm
    position: tuple[int, int]  # (stage index, step) of the weights
    finished: bool  # the run has its DONE marker
    obs_normalizer: ObsNormalizer
    action_scaler: ActionScaler
    ref: RefScores
    make_env: EnvFactory
    device: torch.device
    unloaded: tuple[str, ...] = ()  # networks the run saved that the rebuilt algorithm lacks (a release's twin)

    def act(self, obs: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
        """Env actions for a batch of raw env observations (N, obs_dim), through the run's normalization and scaling."""
        x = torch.as_tensor(self.obs_normalizer.normalize_np(np.atleast_2d(obs)), device=self.device)
        with torch.no_grad():
            actions = self._acting(None, generator)(x)
        return self.action_scaler.to_env(actions.cpu().numpy())

    def evaluate(self, episodes: int | None = None, num_envs: int | None = None, seed: int | None = None,
                 policy: str | None = None) -> EvalResult:
        """Evaluate over `episodes` (default: the run's protocol) with reset seeds from `seed` (default: the run's
        eval seed); with both defaults, the episodes, seeds and acting generator of the run's last evaluation.
        `policy`: one of the algorithm's diagnostic policies (e.g. EDA's `behavior`) in place of its final one."""
        protocol, eval_seed = self.manifest.protocol, self.manifest.eval_seed
        episodes = episodes or protocol["eval_episodes"]
        seed = eval_seed if seed is None else seed
        index, step = self.position
        generator = torch.Generator(device=self.device).manual_seed(
            derive_seed(eval_seed, f"{index}:{step}") if seed == eval_seed else derive_seed(seed, "eval-act"))
        results = evaluate(
            self._acting(policy, generator), self.make_env, episodes=episodes,
            num_envs=num_envs or protocol["eval_envs"], seed=seed, obs_normalizer=self.obs_normalizer,
            action_scaler=self.action_scaler, device=self.device,
        )
        returns = np.array([r.ret for r in results])
        return EvalResult(returns, np.atleast_1d(normalized_score(returns, self.ref)), [r.length for r in results],
                          [r.seed for r in results])

    def diagnostic_policies(self) -> list[str]:
        """The policies the algorithm's stages declare for diagnostics (`Stage.diagnostic_policy`), in stage order."""
        return [s.diagnostic_policy for s in self.algorithm.stages() if s.diagnostic_policy]

    def _acting(self, policy: str | None,
                generator: torch.Generator | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The final policy's `act`, or the diagnostic policy `policy`'s, drawing from `generator`."""
        if policy is None:
            if self.unloaded:  # e.g. EDA's release builds its policy only when its alignment starts
                raise OffdiffError(f"{self.path}: the rebuilt {self.manifest.algorithm} has no "
                                   f"{', '.join(self.unloaded)} to give the run's saved weights to, so it cannot act "
                                   f"as the run's final policy; score a diagnostic policy with --policy "
                                   f"({', '.join(self.diagnostic_policies()) or 'none declared'})")
            return lambda obs: self.algorithm.act(obs, generator=generator)
        declared = self.diagnostic_policies()
        if policy not in declared:
            raise OffdiffError(f"--policy {policy}: {self.manifest.algorithm} has no diagnostic policy of that name "
                               f"(it has: {', '.join(declared) or 'none'})")
        return lambda obs: self.algorithm.diagnostic_act(policy, obs, generator)

    def record_video(self, path: Path, seed: int | None = None) -> int:
        """Render one episode (reset seed `seed`, default the run's eval seed) to `path` (.gif, or .mp4 with
        imageio-ffmpeg installed) through gymnasium's rgb_array rendering; returns the number of frames."""
        path = Path(path)
        if path.suffix.lower() not in (".gif", ".mp4"):
            raise OffdiffError(f"--video {path}: give a .gif or .mp4 file")
        probe = self.make_env()
        spec = probe.spec
        probe.close()
        if spec is None:
            raise OffdiffError(f"the evaluation env of {self.manifest.dataset['source']} cannot render frames "
                               "(it is not a registered gymnasium env); --video needs one, e.g. a MuJoCo task")
        _headless_gl()  # after the checks: a mistake is one line
        env = gym.make(spec, render_mode="rgb_array")
        seed = self.manifest.eval_seed if seed is None else seed
        generator = torch.Generator(device=self.device).manual_seed(derive_seed(seed, "video"))
        try:
            obs, _ = env.reset(seed=seed)
            frames, done = [env.render()], False
            while not done:
                obs, _, terminated, truncated, _ = env.step(self.act(obs, generator)[0])
                frames.append(env.render())
                done = terminated or truncated
        finally:
            env.close()
        _write_video(path, frames, fps=env.metadata.get("render_fps", 30))
        return len(frames)


def _headless_gl() -> None:
    """MuJoCo renders through GLFW by default, which needs a display: without one, use EGL (printed)."""
    if not os.environ.get("MUJOCO_GL") and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
        print("[offdiff] no DISPLAY: rendering with MUJOCO_GL=egl (set MUJOCO_GL to choose another)", file=sys.stderr)


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.suffix.lower() == ".gif":
            iio.imwrite(path, np.stack(frames), extension=".gif", duration=1000 / fps, loop=0)
        else:
            iio.imwrite(path, np.stack(frames), fps=fps)
    except OSError as exc:
        raise OffdiffError(f"cannot write {path}: {str(exc).splitlines()[0]}; for .mp4 install imageio-ffmpeg "
                           "(pip install imageio-ffmpeg), or give a .gif file") from None


def load_weights(run: RunDir) -> tuple[dict[str, Any], tuple[int, int]]:
    """The trained state of a run: the full checkpoint, else the final weights `--keep final` left."""
    for path, what in ((run.checkpoint, "checkpoint"), (run.weights, "final weights")):
        if path.exists():
            state = torch_load(path, what)
            return state, tuple(state["position"])  # type: ignore[return-value]
    raise OffdiffError(f"run {run.path} has no checkpoint.pt or weights.pt: it has not trained yet")


Builder = Callable[[type[Algorithm], AlgorithmConfig, EnvSpec, torch.device, int], Algorithm]


def build_plugin(cls: type[Algorithm], config: AlgorithmConfig, spec: EnvSpec, device: torch.device,
                 seed: int) -> Algorithm:
    """The run's algorithm, untrained, as the runner builds it (its generator from the run seed)."""
    return cls(config, spec, device, algorithm_generator(seed, device))


def load_run(path: str | Path, device: str = "auto", algorithm_cls: type[Algorithm] | None = None,
             build: Builder = build_plugin) -> TrainedRun:
    """The trained algorithm of the run folder `path`, with its weights, on `device`, ready to act.

    `algorithm_cls` (default: the registered plugin the manifest names) and `build` (default: its constructor) let a
    caller load a run of an algorithm the registry does not hold, e.g. an official release's twin whose networks
    exist only once its code has built them (benchmarks/fidelity/evaluate_again.py)."""
    run = RunDir(Path(path))
    if not run.manifest.exists():
        raise OffdiffError(f"{path} is not a run folder (no manifest.json); run folders are "
                           "runs/<grid>/<algo>/<dataset>/<config-hash>/seed_<s>/")
    manifest = run.read_manifest()
    cls = algorithm_cls or get_algorithm(manifest.algorithm)
    config = apply_overrides(cls.Config(), manifest.config, origin=str(run.manifest))
    dataset = manifest.dataset
    spec = EnvSpec(dataset["obs_dim"], dataset["act_dim"], dataset["dataset_id"], manifest.trained_task)
    target = resolve_device(device)
    algorithm = build(cls, config, spec, target, manifest.seed)
    state, position = load_weights(run)
    modules = state["algorithm"]["modules"] if "algorithm" in state else state["modules"]
    for name, module in algorithm.modules().items():
        module.load_state_dict(modules[name])
    transforms = manifest.transforms
    return TrainedRun(
        path=run.path, manifest=manifest, algorithm=algorithm, position=position, finished=run.is_done(),
        obs_normalizer=ObsNormalizer.from_state(transforms["obs"]),
        action_scaler=ActionScaler(transforms["action"]["low"], transforms["action"]["high"]),
        ref=RefScores(**dataset["ref_scores"]), make_env=_env_factory(dataset), device=target,
        unloaded=tuple(sorted(set(modules) - set(algorithm.modules()))),
    )


def _env_factory(dataset: dict[str, Any]) -> EnvFactory:
    """The run's evaluation env: a Minari dataset's own recorded env (with its arguments) when the run used it,
    else the env id the manifest names."""
    if dataset["source"].startswith("minari:"):
        data = resolve(dataset["source"])
        if data.info().eval_env == dataset["eval_env"]:
            return data.env_factory()
    return resolve(dataset["source"], dataset["eval_env"]).env_factory()
