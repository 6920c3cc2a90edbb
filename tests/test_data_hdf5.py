"""D4RL-layout HDF5 files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import write_d4rl_file

from offdiff.data.sources import resolve
from offdiff.errors import OffdiffError


def test_load_and_info(d4rl_hdf5_file: Path) -> None:
    source = resolve(f"hdf5:{d4rl_hdf5_file}", eval_env="Hopper-v5")
    info = source.info()
    assert (info.dataset_id, info.task, info.eval_env) == ("hopper-tiny-v2", "hopper-tiny", "Hopper-v5")
    assert (info.obs_dim, info.act_dim, info.num_transitions, info.num_episodes) == (11, 3, 200, 5)
    t = source.load()
    with h5py.File(d4rl_hdf5_file) as f:
        np.testing.assert_array_equal(t.observations, f["observations"][()])
        np.testing.assert_array_equal(t.timeouts, f["timeouts"][()])
    assert t.terminals.sum() == 2 and t.timeouts.sum() == 3
    assert source.ref_scores("d4rl").min == -20.272305
    np.testing.assert_array_equal(resolve(f"hdf5:{d4rl_hdf5_file}", "Hopper-v5").load().rewards, t.rewards)


def test_eval_env_required(d4rl_hdf5_file: Path) -> None:
    with pytest.raises(OffdiffError, match="needs an evaluation env: pass --eval-env"):
        resolve(f"hdf5:{d4rl_hdf5_file}")


def test_missing_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(OffdiffError, match="does not exist"):
        resolve(f"hdf5:{tmp_path / 'nope.hdf5'}", eval_env="Hopper-v5")
    path = write_d4rl_file(tmp_path / "hopper-x-v2.hdf5", timeouts=None)
    with pytest.raises(OffdiffError, match="lacks key.*timeouts"):
        resolve(f"hdf5:{path}", eval_env="Hopper-v5").info()


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "hopper-bad-v2.hdf5"
    path.write_text("hello")
    with pytest.raises(OffdiffError, match="cannot read"):
        resolve(f"hdf5:{path}", eval_env="Hopper-v5").info()


def test_nan_names_the_field(tmp_path: Path) -> None:
    rewards = np.ones(200, np.float32)
    rewards[17] = np.nan
    path = write_d4rl_file(tmp_path / "hopper-nan-v2.hdf5", rewards=rewards)
    with pytest.raises(OffdiffError, match=r"hopper-nan-v2.*rewards.*row 17"):
        resolve(f"hdf5:{path}", eval_env="Hopper-v5").load()


def test_dims_mismatch(d4rl_hdf5_file: Path) -> None:
    with pytest.raises(OffdiffError, match=r"observations of shape \(11,\) but eval env Walker2d-v5 has \(17,\)"):
        resolve(f"hdf5:{d4rl_hdf5_file}", eval_env="Walker2d-v5").info()
