"""Data sources by scheme (`minari:<id>`, `hdf5:<path>`, `toy:<name>`) and the `offdiff data` queries.

Loading never touches the network (`HF_HUB_OFFLINE=1` is set); `fetch` is the only downloader.
"""

from __future__ import annotations

import dataclasses
import json
import os
from functools import partial
from typing import Any

import minari
from minari.storage.datasets_root_dir import get_dataset_path

from offdiff.data import d4rl
from offdiff.data.base import DatasetInfo, DataSource, EnvFactory
from offdiff.data.fetch import fetch
from offdiff.data.hdf5_source import D4rlSource, Hdf5Source, read_layout
from offdiff.data.minari_source import MinariSource
from offdiff.data.scores import RefScores, reference_scores
from offdiff.data.tasks import task_key
from offdiff.data.toy import DATA_SEED, DEFAULT_SIZE, ToyBanditEnv, toy_task
from offdiff.data.transitions import Transitions
from offdiff.errors import OffdiffError

__all__ = ["DataSource", "DatasetInfo", "ResolvedDataset", "describe", "fetch", "list_local", "resolve",
           "resolve_dataset"]


class ToySource(DataSource):
    def __init__(self, name: str, eval_env: str | None = None):
        self.task = toy_task(name)
        self.source = f"toy:{name}"
        if eval_env not in (None, self.source):
            raise OffdiffError(f"{self.source} is evaluated in its own env; drop eval_env={eval_env!r}")

    def info(self) -> DatasetInfo:
        bound = self.task.act_bound
        dataset_id = f"toy/{self.task.name}"
        return DatasetInfo(
            source=self.source, dataset_id=dataset_id, task=task_key(dataset_id), obs_dim=self.task.obs_dim,
            act_dim=2, action_low=(-bound, -bound), action_high=(bound, bound), eval_env=self.source,
            num_transitions=DEFAULT_SIZE, num_episodes=DEFAULT_SIZE,
            metadata={"toy_task": self.task.name, "data_seed": DATA_SEED}, task_rule="the toy task's name",
            eval_env_rule="the toy task's own one-step env",
        )

    def load(self) -> Transitions:
        return self.task.transitions().validate(self.source)

    def env_factory(self) -> EnvFactory:
        return partial(ToyBanditEnv, self.task.name)


SCHEMES: dict[str, type[DataSource]] = {
    "minari": MinariSource, "hdf5": Hdf5Source, "d4rl": D4rlSource, "toy": ToySource,
}


def resolve(source: str, eval_env: str | None = None) -> DataSource:
    """The data source named by `source` (e.g. `minari:mujoco/hopper/medium-v0`)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    scheme, sep, rest = source.partition(":")
    if not sep or scheme not in SCHEMES or not rest:
        raise OffdiffError(
            f"unknown data source {source!r}; use minari:<dataset id>, d4rl:<name> (e.g. d4rl:hopper-medium-v2), "
            "hdf5:<path to a D4RL-style file> or toy:<name>"
        )
    return SCHEMES[scheme](rest, eval_env)


@dataclasses.dataclass(frozen=True)
class ResolvedDataset:
    """A source resolved once (`resolve_dataset`): the data source, its description and its reference scores."""

    data: DataSource
    info: DatasetInfo
    ref: RefScores


def resolve_dataset(source: str, eval_env: str | None = None, ref_scores: str | None = None) -> ResolvedDataset:
    """`resolve` the source, describe it (no data is loaded) and find its reference scores (`--ref-scores`)."""
    data = resolve(source, eval_env)
    return ResolvedDataset(data, data.info(), data.ref_scores(ref_scores))


def _env_id(spec_json: str | None) -> str | None:
    return json.loads(spec_json).get("id") if spec_json else None


def _ref_or_none(task: str, meta: dict[str, Any], is_d4rl: bool, dataset: str) -> dict[str, Any] | None:
    try:
        return dataclasses.asdict(reference_scores(task, meta, is_d4rl=is_d4rl, dataset=dataset))
    except OffdiffError:
        return None


def list_local() -> list[dict[str, Any]]:
    """One row per dataset in the local Minari store and the D4RL store, for `offdiff data list`."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    rows = []
    for dataset_id, meta in minari.list_local_datasets().items():
        folder = get_dataset_path(dataset_id)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        rows.append({
            "id": dataset_id,
            "source": f"minari:{dataset_id}",
            "env": _env_id(meta.get("eval_env_spec") or meta.get("env_spec")),
            "episodes": int(meta["total_episodes"]),
            "steps": int(meta["total_steps"]),
            "size_mb": round(size / 2**20, 3),
            "ref_scores": _ref_or_none(task_key(dataset_id), meta, dataset_id.startswith(d4rl.MINARI_NAMESPACE),
                                       f"minari:{dataset_id}"),
        })
    for name in d4rl.catalogue():
        path = d4rl.local_path(name)
        if path.is_file():
            rows.append({
                "id": name, "source": f"d4rl:{name}", "env": d4rl.default_eval_env(task_key(name)),
                "episodes": None, "steps": read_layout(path)[0]["rewards"][0],
                "size_mb": round(path.stat().st_size / 2**20, 3),
                "ref_scores": _ref_or_none(task_key(name), {}, True, f"d4rl:{name}"),
            })
    return rows


def describe(source: str, eval_env: str | None = None) -> dict[str, Any]:
    """Info and reference scores (None, with the reason, when missing) for `offdiff data info`."""
    data = resolve(source, eval_env)
    out: dict[str, Any] = dataclasses.asdict(data.info())
    try:
        out["ref_scores"] = dataclasses.asdict(data.ref_scores())
    except OffdiffError as e:
        out["ref_scores"], out["ref_scores_error"] = None, str(e)
    return out
