"""The registry drives coverage: a fourth plugin, registered through an entry point in a temporary folder (never
installed into the environment running the tests), gets the conformance suite, the compiled-equals-eager and
host-sync checks and the speed benchmark with no edit to the suite or its tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = '''
import dataclasses

import torch

from offdiff.algorithm import Algorithm, AlgorithmConfig, Stage
from offdiff.config import AT_LEAST_1, budget, field


@dataclasses.dataclass(frozen=True)
class FourthConfig(AlgorithmConfig):
    steps: int = budget(1000, "regression steps")
    batch_size: int = field(256, "transitions per step", AT_LEAST_1)
    hidden: int = field(64, "hidden width", AT_LEAST_1)


class Fourth(Algorithm):
    """A tanh MLP regressed onto the dataset's actions."""

    name = "fourth"
    Config = FourthConfig
    smoke_config = {"hidden": 8, "batch_size": 4}

    def __init__(self, config, spec, device, generator):
        super().__init__(config, spec, device, generator)
        self.policy = torch.nn.Sequential(torch.nn.Linear(spec.obs_dim, config.hidden), torch.nn.ReLU(),
                                          torch.nn.Linear(config.hidden, spec.act_dim), torch.nn.Tanh()).to(device)
        self.optimizer = torch.optim.SGD(self.policy.parameters(), lr=0.1)

    @classmethod
    def stage_plan(cls, config):
        return [Stage("fit", config.steps, config.batch_size)]

    def update(self, stage, batch, step):
        loss = (self.policy(batch.obs) - batch.actions).square().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def act(self, obs, generator=None):
        return self.policy(obs)

    def modules(self):
        return {"policy": self.policy}

    def optimizers(self):
        return {"policy": self.optimizer}
'''


def _register_fourth(site: Path) -> None:
    """The module and the distribution metadata (with its entry point) that `pip install` would write."""
    (site / "offdiff_fourth").mkdir(parents=True)
    (site / "offdiff_fourth" / "__init__.py").write_text(PLUGIN)
    meta = site / "offdiff_fourth-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: offdiff-fourth\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[offdiff.algorithms]\nfourth = offdiff_fourth:Fourth\n")


@pytest.mark.slow
def test_a_registered_fourth_plugin_gets_conformance_compile_and_speed_coverage(tmp_path):
    _register_fourth(tmp_path / "site")
    env = {**os.environ, "OFFDIFF_COMPILE_TESTS": "all",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "pytest"),
         "-k", "fourth or quick_benchmark_prints", "tests/test_conformance.py", "tests/test_compile.py",
         "tests/test_bench.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    outcomes = dict(re.findall(r"^tests/(\S+) (PASSED|SKIPPED|FAILED)", done.stdout, re.MULTILINE))
    assert outcomes["test_conformance.py::test_every_registered_plugin_conforms[fourth]"] == "PASSED"
    assert outcomes["test_compile.py::test_compiled_updates_equal_eager[cpu-fourth]"] == "PASSED"
    assert "test_compile.py::test_no_host_sync_inside_a_training_step[fourth]" in outcomes  # run where CUDA is
    # the quick benchmark measures every registered plugin by default, and checks each has its figures
    assert outcomes["test_bench.py::test_quick_benchmark_prints_a_table_and_writes_json"] == "PASSED"
