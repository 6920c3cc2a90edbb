"""benchmarks/env.sh, sourced from an interactive-like shell: it may change PATH and nothing else."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV_SH = ROOT / "benchmarks" / "env.sh"

# Prints the shell's options, exported variables (but PATH), shell variables and functions, so that a
# snapshot before and after `source` can be compared. Bash's own bookkeeping variables are left out.
SNAPSHOT = r"""
snapshot() {
  set -o; shopt; shopt -po
  env -u PATH | sort
  compgen -v | grep -Ev '^(_|BASH_.*|FUNCNAME|PIPESTATUS|LINENO|RANDOM|SECONDS|SRANDOM|EPOCH.*|before|after|rc)$'
  declare -F
}
"""


def _bash(script: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C"}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={**base, **env}, timeout=60)


def _fake_venv(tmp_path: Path) -> Path:
    """A venv whose python is this one's and whose install stamp is fresh: sourcing installs nothing."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (venv / ".offdiff-installed").touch()
    return venv


def test_sourcing_env_sh_changes_only_path(tmp_path):
    venv = _fake_venv(tmp_path)
    script = SNAPSHOT + f"""
    before="$(snapshot)"
    source {ENV_SH}
    rc=$?
    after="$(snapshot)"
    echo "rc=$rc"
    diff <(echo "$before") <(echo "$after") && echo SAME
    echo "PATH=$PATH"
    false
    echo "still running"
    """
    done = _bash(script, OFFDIFF_VENV=str(venv))
    assert "rc=0" in done.stdout, done.stdout + done.stderr
    assert "SAME" in done.stdout, done.stdout
    assert f"PATH={venv}/bin:" in done.stdout
    assert "still running" in done.stdout
    assert "HF_HUB_OFFLINE" not in done.stdout


@pytest.mark.slow
def test_sourcing_env_sh_twice_adds_the_venv_once(tmp_path):
    venv = _fake_venv(tmp_path)
    done = _bash(f'source {ENV_SH}; source {ENV_SH}; echo "PATH=$PATH"', OFFDIFF_VENV=str(venv))
    path = done.stdout.split("PATH=", 1)[1].strip().split(":")
    assert path.count(f"{venv}/bin") == 1


def test_a_failed_set_up_returns_nonzero_and_leaves_the_shell_running(tmp_path):
    script = f"""
    source {ENV_SH}
    echo "rc=$?"
    echo "still running"
    """
    done = _bash(script, OFFDIFF_VENV=str(tmp_path / "missing-venv"), PYTHON="false")
    assert "rc=1" in done.stdout, done.stdout + done.stderr
    assert "still running" in done.stdout
    assert not (tmp_path / "missing-venv").exists()


def test_license_and_citation_match_pyproject():
    import tomllib
    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["license"] == project["license"]["text"]
    assert str(citation["version"]) == project["version"]
    arxiv = {ref["identifiers"][0]["value"] for ref in citation["references"]}
    assert arxiv == {"arXiv:2208.06193", "arXiv:2405.19690", "arXiv:2407.09024"}
    readme = (ROOT / "README.md").read_text()
    assert all(a in readme for a in arxiv)


def test_quickstart_always_runs_the_quickstart_grid(tmp_path):
    """Whatever datasets this machine has, the quickstart is the toy grid; its tables are printed at the end."""
    venv = _fake_venv(tmp_path)
    calls = tmp_path / "calls"
    offdiff = venv / "bin" / "offdiff"  # stands in for the real command: records how it was called
    offdiff.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    offdiff.chmod(0o755)
    done = _bash(f"bash {ROOT}/benchmarks/quickstart.sh --dry-run", OFFDIFF_VENV=str(venv))
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "grid submit benchmarks/grids/quickstart.yaml --profile slurm/profiles/local.yaml --runs-dir runs --dry-run",
        "aggregate runs/quickstart --out results/quickstart",
    ]
    assert "| toy-four_corners |" in done.stdout  # the committed table, printed
