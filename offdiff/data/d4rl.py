"""D4RL's own data: its file names, its locomotion catalogue, the local store and the default eval envs.

D4RL's Gym locomotion datasets are HDF5 files (`hopper_medium-v2.hdf5`); `offdiff data fetch d4rl:<name>`
downloads them into the store (`$OFFDIFF_D4RL_PATH`, default `~/.offdiff/datasets/d4rl`), and
`d4rl:<name>` reads them from there. AntMaze, Adroit and Kitchen come through Minari's `D4RL/` namespace.

D4RL recorded its data in mujoco-py envs (`-v2` / `-v3`); gymnasium's `-v4` envs are the closest it has
(the same model files on the `mujoco` bindings), so they are the default eval env for D4RL locomotion.
`-v5` changed the models (e.g. Walker2d's left-foot friction 0.9 -> 1.9), so it is not used by default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from offdiff.data.tasks import family, task_key
from offdiff.errors import OffdiffError

BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl"
BASE_URL_VARIABLE = "OFFDIFF_D4RL_URL"  # a mirror (or a test server) that has D4RL's folder layout
STORE_VARIABLE = "OFFDIFF_D4RL_PATH"
LOCOMOTION_ENVS = {"halfcheetah": "HalfCheetah-v4", "hopper": "Hopper-v4", "walker2d": "Walker2d-v4"}
LOCOMOTION_KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")
_ADROIT = ("pen", "door", "hammer", "relocate")
_FILE_NAME = re.compile(
    r"(?P<env>halfcheetah|hopper|walker2d|ant)[_-](?P<kind>random|medium|expert|medium[_-]replay|medium[_-]expert|"
    r"full[_-]replay)(-v[012])?"
    r"|(?P<adroit>pen|door|hammer|relocate)-(human|cloned|expert)-v[01]"
)
MINARI_NAMESPACE = "D4RL/"


def is_d4rl_file_name(stem: str) -> bool:
    """Whether a file stem is one of D4RL's own names (locomotion `hopper_medium-v2`, Adroit `pen-human-v1`)."""
    return _FILE_NAME.fullmatch(stem.lower()) is not None


def default_eval_env(task: str) -> str | None:
    """The `-v4` env of a D4RL locomotion task, None for the others (they need an explicit eval env)."""
    return LOCOMOTION_ENVS.get(family(task))


def catalogue() -> list[str]:
    """Every `d4rl:` name: D4RL's v2 Gym locomotion datasets of the three papers' envs."""
    return [f"{env}-{kind}-v2" for env in LOCOMOTION_ENVS for kind in LOCOMOTION_KINDS]


def check_name(name: str) -> str:
    """`name` if it is in the catalogue, else a one-line error that says where other D4RL data comes from."""
    if name in catalogue():
        return name
    task = task_key(name)
    if family(task) in ("antmaze", "kitchen", *_ADROIT, "maze2d"):
        raise OffdiffError(
            f"d4rl:{name}: AntMaze, Adroit and Kitchen come through Minari's D4RL namespace, e.g. "
            f"minari:{MINARI_NAMESPACE}antmaze/umaze-v1 (offdiff data fetch {MINARI_NAMESPACE}antmaze/umaze-v1)"
        )
    raise OffdiffError(f"unknown D4RL dataset d4rl:{name}; d4rl: names are <env>-<kind>-v2 with env in "
                       f"{', '.join(LOCOMOTION_ENVS)} and kind in {', '.join(LOCOMOTION_KINDS)}")


def file_name(name: str) -> str:
    """D4RL's file name for a catalogue name: `hopper-medium-replay-v2` -> `hopper_medium_replay-v2.hdf5`."""
    stem = name.removesuffix("-v2")
    env, _, kind = stem.partition("-")
    return f"{env}_{kind.replace('-', '_')}-v2.hdf5"


def url(name: str) -> str:
    base = os.environ.get(BASE_URL_VARIABLE, BASE_URL).rstrip("/")
    return f"{base}/gym_mujoco_v2/{file_name(name)}"


def store() -> Path:
    return Path(os.environ.get(STORE_VARIABLE, Path.home() / ".offdiff" / "datasets" / "d4rl")).expanduser()


def local_path(name: str) -> Path:
    return store() / file_name(name)
