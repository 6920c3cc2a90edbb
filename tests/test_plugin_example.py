"""The plugin template in examples/offdiff-bc, as a third party would use it: built and installed as its own
distribution (into a temporary folder, never into the environment running the tests), found through its entry
point, checked with the conformance suite and trained in a two-run grid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a pip install, the conformance suite and a grid, in subprocesses

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "offdiff-bc"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a Python that has the example plugin installed (in a temporary --target folder)."""
    pytest.importorskip("setuptools")
    target = tmp_path_factory.mktemp("plugin_site")
    source = tmp_path_factory.mktemp("plugin_source") / EXAMPLE.name  # setuptools writes build/ next to it
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300, cwd=source,
    )
    assert any(target.glob("offdiff_bc_example-0.1.0.dist-info")), "the plugin's metadata was installed"
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


def _python(env: dict[str, str], code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_example_plugin_is_registered_and_conforms(plugin_env, tmp_path):
    done = _python(plugin_env, (
        "from offdiff.cli import main\n"
        "from offdiff.registry import get_algorithm\n"
        "from offdiff.testing import check_algorithm\n"
        "main(['algos'])\n"
        "check_algorithm(get_algorithm('bc'))\n"  # at its declared smoke_config
        "print('conforms')\n"
    ), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "offdiff_bc:BehaviorCloning" in done.stdout and "offdiff-bc-example 0.1.0" in done.stdout
    assert "conforms" in done.stdout


def test_example_plugin_runs_in_a_grid(plugin_env, tmp_path):
    grid = tmp_path / "bc.yaml"
    grid.write_text("name: bc\ndatasets: [toy:four_corners]\nseeds: [0, 1]\nalgorithms: [bc]\n"
                    "budget: {steps: 200}\nprotocol: {eval_every: 200, eval_episodes: 10, eval_envs: 5}\n")
    profile = tmp_path / "profile.yaml"
    profile.write_text("executor: debug\ncpus: 1\n")
    done = _python(plugin_env, (
        "import sys\nfrom offdiff.cli import main\n"
        f"sys.exit(main(['grid', 'submit', {str(grid)!r}, '--profile', {str(profile)!r}, '--runs-dir', 'runs']))\n"
    ), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = sorted((tmp_path / "runs" / "bc" / "bc").glob("*/*/seed_*"))
    assert [r.name for r in runs] == ["seed_0", "seed_1"]
    assert all((r / "DONE").exists() and (r / "evals.jsonl").exists() for r in runs)
    assert '"offdiff-bc-example"' in (runs[0] / "manifest.json").read_text()  # the plugin's package is recorded
