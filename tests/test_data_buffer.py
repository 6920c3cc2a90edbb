"""The device buffer."""

from __future__ import annotations

import numpy as np
import torch

from offdiff.data.buffer import DeviceBuffer
from offdiff.data.toy import toy_task


def _buffer() -> DeviceBuffer:
    t = toy_task("four_corners").transitions(n=100)
    return DeviceBuffer(t.replace(terminals=np.arange(100) % 3 == 0), "cpu")


def test_sample_deterministic_shapes_and_device() -> None:
    buffer = _buffer()
    a = buffer.sample(64, torch.Generator().manual_seed(5))
    b = buffer.sample(64, torch.Generator().manual_seed(5))
    assert torch.equal(a.index, b.index) and torch.equal(a.actions, b.actions)
    assert a.obs.shape == (64, 2) and a.actions.shape == (64, 2)
    assert a.rewards.shape == a.not_done.shape == (64,)
    assert a.rewards.dtype == a.not_done.dtype == torch.float32 and a.index.dtype == torch.long
    assert all(x.device == torch.device("cpu") for x in (a.obs, a.rewards, a.index))
    torch.testing.assert_close(a.not_done, (a.index % 3 != 0).float())
    torch.testing.assert_close(a.rewards, buffer.rewards[a.index])
    c = buffer.sample(64, torch.Generator().manual_seed(6))
    assert not torch.equal(a.index, c.index)


def test_len_and_subset() -> None:
    buffer = _buffer()
    assert len(buffer) == 100
    sub = buffer.subset([3, 4, 5])
    assert len(sub) == 3
    torch.testing.assert_close(sub.actions, buffer.actions[3:6])
    torch.testing.assert_close(sub.not_done, torch.tensor([0.0, 1.0, 1.0]))
    assert sub.sample(10, torch.Generator().manual_seed(0)).index.max() < 3
