"""Writing collected datasets into the local Minari store: ids, the never-overwrite rule, atomic writes.

A dataset is built in a hidden staging folder inside the store (Minari skips hidden folders) and moved
into place with one rename, so the store never holds half a dataset. Each dataset records in its
metadata (`offdiff_collect`) how it was made, including a fingerprint of everything that determines
its content: a rerun of the same collection recognises its own datasets and skips them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import minari
from minari.namespace import create_namespace, list_local_namespaces
from minari.storage.datasets_root_dir import get_dataset_path

from offdiff.collect.envs import EnvInfo
from offdiff.collect.episodes import Episodes
from offdiff.data.scores import RefScores
from offdiff.errors import OffdiffError

METADATA_KEY = "offdiff_collect"
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")


def dataset_id(namespace: str, env: EnvInfo, kind: str) -> str:
    """`<namespace>/<env slug>/<kind>-v0`, e.g. `local/hopper/medium-v0`."""
    if not _NAMESPACE.fullmatch(namespace):
        raise OffdiffError(f"bad namespace {namespace!r}: use letters, digits, '-', '_' (and '/' between parts)")
    return f"{namespace}/{env.slug}/{kind}-v0"


def recorded_fingerprint(dataset: str) -> str | None:
    """The collection fingerprint of `dataset` in the local store; None if it is not there."""
    data = get_dataset_path(dataset) / "data"
    if not data.is_dir():
        return None
    try:
        meta = json.loads((data / "metadata.json").read_text())
    except (OSError, ValueError):
        return ""
    return str((meta.get(METADATA_KEY) or {}).get("fingerprint", ""))


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def write_dataset(
    dataset: str, episodes: Episodes, env: EnvInfo, ref: RefScores, ref_episodes: int, description: str,
    algorithm: str, provenance: dict[str, Any], overwrite: bool,
) -> Path:
    """Write `episodes` as the Minari dataset `dataset` (hdf5) with eval_env and both reference scores, each
    the mean return of `ref_episodes` episodes."""
    target = get_dataset_path(dataset)
    if target.exists() and not overwrite:
        raise OffdiffError(f"dataset {dataset} already exists at {target}; pass --overwrite to replace it")
    namespace = dataset.rsplit("/", 1)[0]
    if namespace not in list_local_namespaces():
        create_namespace(namespace)
    staging = Path(tempfile.mkdtemp(dir=get_dataset_path(), prefix=".offdiff-collect-"))
    try:
        with _minari_root(staging):
            minari.create_dataset_from_buffers(
                dataset_id=dataset, buffer=episodes.buffers(), env=env.env_id, eval_env=env.env_id,
                algorithm_name=algorithm, author="offdiff data collect",
                author_email="offdiff-collect@localhost", code_permalink="offdiff/collect",
                description=description, ref_min_score=ref.min, ref_max_score=ref.max,
                num_episodes_average_score=ref_episodes, data_format="hdf5",
            ).storage.update_metadata({METADATA_KEY: {**provenance, "ref_scores_source": ref.source}})
        if target.exists():
            target.rename(staging / "replaced")
        (staging / dataset).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
