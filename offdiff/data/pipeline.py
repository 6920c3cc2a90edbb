"""`prepare`: a source string and named transforms -> a training buffer on the device plus its eval pieces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from offdiff.data.base import DatasetInfo, EnvFactory
from offdiff.data.buffer import DeviceBuffer
from offdiff.data.episodes import Episodes
from offdiff.data.scores import RefScores
from offdiff.data.sources import ResolvedDataset, resolve_dataset
from offdiff.data.transforms import ActionScaler, ObsNormalizer, apply_reward_transform, check_transform_names


@dataclass
class PreparedData:
    info: DatasetInfo
    ref: RefScores
    buffer: DeviceBuffer  # actions in [-1, 1], observations normalized, rewards transformed
    obs_normalizer: ObsNormalizer
    action_scaler: ActionScaler
    transforms: dict[str, Any]  # names and parameters, JSON-able, for the run manifest
    make_env: EnvFactory  # picklable; one raw evaluation env (apply obs_normalizer / action_scaler)
    episodes: Episodes  # where the buffer's episodes end and their returns before the reward transform
    content_sha256: str  # of the transitions as loaded, before any transform (Transitions.content_sha256)


def prepare(
    source: str | ResolvedDataset,
    *,
    eval_env: str | None = None,
    obs_transform: str = "none",
    reward_transform: str = "none",
    device: torch.device | str = "cpu",
    ref_scores: str | None = None,
) -> PreparedData:
    """Resolve, check (names, reference scores, action bounds), load, transform and move to `device`.

    `source` may be resolved already (a planned run's dataset); `eval_env` and `ref_scores` then belong to it.
    """
    check_transform_names(obs_transform, reward_transform)
    if isinstance(source, ResolvedDataset):
        if eval_env is not None or ref_scores is not None:
            raise TypeError("a resolved dataset has its eval_env and ref_scores already")
        resolved = source
    else:
        resolved = resolve_dataset(source, eval_env, ref_scores)
    data, info, ref = resolved.data, resolved.info, resolved.ref
    transitions = data.load()
    content_sha256 = transitions.content_sha256()
    scaler = ActionScaler(info.action_low, info.action_high)
    actions = scaler.check_dataset(transitions.actions, info.source)
    transitions = transitions.replace(actions=scaler.to_policy(actions))
    episodes = Episodes.of(transitions)
    transitions, reward_params = apply_reward_transform(reward_transform, transitions)
    normalizer = ObsNormalizer.from_name(obs_transform, transitions)
    transitions = transitions.replace(
        observations=normalizer.normalize_np(transitions.observations),
        next_observations=normalizer.normalize_np(transitions.next_observations),
    )
    transforms = {
        "reward": {"name": reward_transform, "params": reward_params},
        "obs": normalizer.state(),
        "action": scaler.state(),
    }
    buffer = DeviceBuffer(transitions, device)
    return PreparedData(info, ref, buffer, normalizer, scaler, transforms, data.env_factory(), episodes,
                        content_sha256)
