"""Command-line conventions: --version, help on every argument, defaults and examples in every --help, the
top-level help listing every command, readable `data` tables, `aggregate`'s default --out, a quiet broken pipe."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import offdiff
import offdiff.registry
from offdiff.cli import build_parser, main
from offdiff.cli_style import subcommands


def _leaves() -> list[tuple[str, argparse.ArgumentParser]]:
    return [(path, sub) for path, sub in subcommands(build_parser())
            if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"offdiff {offdiff.__version__}"


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    commands = {path.split()[0] for path, _ in subcommands(build_parser())}
    assert commands >= {"train", "algos", "data", "eval", "export", "aggregate", "grid", "bench"}
    assert all(f"    {c}" in out for c in commands)


START_UP = """
import json, sys
from offdiff.cli import main
heavy = {}
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit:
        pass
    heavy[" ".join(argv)] = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2:])
print(json.dumps(heavy))
"""


def test_help_version_and_argument_errors_import_neither_torch_nor_a_plugin():
    """Start-up stays light (`offdiff bench plan` measures it against a bare `import torch`)."""
    plugins = {info.target.split(".")[0].split(":")[0] for info in offdiff.registry.plugins().values()}
    calls = [["--help"], ["--version"], *([*path.split(), "--help"] for path, _ in _leaves()),
             ["train"], ["train", "--algo", "dql"], ["nonsense"], ["grid", "submit", "g.yaml"], ["--seed", "x"]]
    done = subprocess.run([sys.executable, "-c", START_UP, json.dumps(calls), "torch", *sorted(plugins)],
                          capture_output=True, text=True, timeout=300, check=True)
    heavy = json.loads(done.stdout.splitlines()[-1])
    assert plugins >= {"offdiff_dql", "offdiff_dtql", "offdiff_eda"}
    assert len(heavy) == len(calls) and not any(heavy.values()), {k: v[:3] for k, v in heavy.items() if v}


@pytest.mark.parametrize(("path", "parser"), _leaves(), ids=[p for p, _ in _leaves()])
def test_every_command_has_help_on_each_argument_defaults_and_examples(path, parser):
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"offdiff {path}: {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    assert "examples:\n  offdiff " + path.split()[0] in text, f"offdiff {path}: no examples in the epilog"
    for action in parser._actions:
        if action.option_strings and not any(action.default is v for v in (None, False, argparse.SUPPRESS)) \
                and action.default != []:
            assert "default" in parser._get_formatter()._get_help_string(action), (path, action.option_strings)


def test_train_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "run seed; the sampler's and evaluation's seeds derive from it (default: 0)" in out
    assert "(default: runs)" in out and "(default: tensorboard)" in out


def test_data_info_is_a_table_and_json_on_request(capsys):
    assert main(["data", "info", "toy:four_corners"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["key", "value"] and "0 .. 5 (offdiff toy task four_corners)" in out
    assert main(["data", "info", "toy:four_corners", "--json"]) == 0
    assert '"max": 5.0' in capsys.readouterr().out


def test_data_list_table(capsys, tiny_hopper_minari):
    assert main(["data", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["dataset", "eval", "env"] and row.startswith("test/hopper/tiny-v0")


def test_aggregate_out_defaults_to_results_of_the_grid(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--algo", "dql", "--dataset", "toy:four_corners", "--steps", "10", "--eval-episodes", "5",
                 "--eval-envs", "5", "--device", "cpu", "--quiet", "--set", "hidden=16", "--log", "none",
                 "--runs-dir", "runs"]) == 0
    assert main(["aggregate", "runs/train", "--reps", "10"]) == 0
    assert "to results/train" in capsys.readouterr().out and Path("results/train/scores.csv").exists()
    assert main(["aggregate", "runs/train", "runs/other"]) == 2
    assert "give --out" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly():
    read, write = os.pipe()
    os.close(read)  # like `| head` that has already exited
    with os.fdopen(write, "w") as stdout:
        done = subprocess.run([sys.executable, "-m", "offdiff.cli", "data", "info", "toy:four_corners"], stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.stderr == "" and done.returncode == 141


def test_grid_dry_run_quiet_leaves_out_the_run_list(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\ndatasets: [toy:four_corners]\nseeds: [0, 1, 2]\nalgorithms: [dql]\n")
    profile = tmp_path / "p.yaml"
    profile.write_text("executor: local\n")
    argv = ["grid", "submit", str(grid), "--profile", str(profile), "--runs-dir", str(tmp_path), "--dry-run"]
    assert main(argv) == 0
    full = capsys.readouterr().out
    assert main([*argv, "--quiet"]) == 0
    quiet = capsys.readouterr().out
    assert "seed=2" in full and "seed=2" not in quiet and "to submit: 3" in quiet
