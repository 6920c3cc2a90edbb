"""`offdiff bench speed`: the quick benchmark's table and JSON over every registered plugin, the reference figures,
concurrent loops, and its argument errors. No test asserts a speed: figures live in the benchmark."""

from __future__ import annotations

import json
import math
import platform

import pytest
import torch

from offdiff.bench.report import REFERENCES
from offdiff.cli import main
from offdiff.registry import plugins


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_benchmark_prints_a_table_and_writes_json(tmp_path, capsys, restore_threads):
    out = tmp_path / "speed" / "quick.json"
    assert main(["bench", "speed", "--quick", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    machine = payload["machine"]
    assert machine["threads"] == 1 and machine["torch"] == torch.__version__ and machine["cpu_cores"] >= 1
    assert len(machine["load_average_start"]) == 3 and machine["cpu_model"]
    assert machine["malloc"] != "default" or platform.libc_ver()[0] != "glibc", "the bench tunes malloc as train does"
    registered = list(plugins())
    assert payload["command"].startswith(f"offdiff bench speed --algos {','.join(registered)} --device cpu "
                                         "--modes eager")
    rows = payload["results"]
    found = {(r["algo"], r["measure"], r["label"]) for r in rows}
    for algo in registered:  # by default, every registered plugin: its training steps/s and its actions/s
        assert {(algo, "act", f"{n} envs") for n in (1, 10, 20)} <= found
        assert any(a == algo and measure == "train" for a, measure, _ in found), algo
    assert {k for k in REFERENCES} <= found, "every reference figure is measured"
    assert ("eda", "alignment_set", "4 states") in found
    for r in rows:
        numbers = [r["value"], r["peak_memory_mb"], *r["repeats"]]
        assert all(isinstance(x, float) and math.isfinite(x) and x > 0 for x in numbers), r
        assert r["warmup_s"] >= 0 and r["unit"] in ("steps/s", "actions/s", "states/s")
        if r["reference"] is not None:
            assert r["ratio_to_reference"] == pytest.approx(r["value"] / r["reference"])
    table = [line for line in printed.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == len(rows) + 1 and "ratio" in table[0]
    assert out.with_suffix(".md").read_text().splitlines()[0] == printed.splitlines()[0]


@pytest.mark.parametrize(("argv", "message"), [
    (["--modes", "graphs"], "left out"),
    (["--modes", "eager,fast"], "unknown mode"),
    (["--algos", "nope"], "nope"),
    (["--threads", "0"], "--threads"),
    (["--reference", "missing.json"], "not a JSON file"),
    (["--reference", "{\"figures\": {\"dql train mian\": 3}}"], "unknown figure(s) ['dql train mian']"),
    (["--reference", "{\"figures\": {\"dql train main\": -1}}"], "non-positive value(s) ['dql train main']"),
    (["--concurrent", "0"], "--concurrent takes numbers of loops >= 1"),
    (["--concurrent", "two"], "--concurrent takes numbers of loops >= 1"),
    (["--mps"], "--mps runs concurrent loops through CUDA MPS"),
])
def test_bad_benchmark_arguments_are_one_line_errors(tmp_path, capsys, argv, message):
    if argv[0] == "--reference" and argv[1].startswith("{"):
        (tmp_path / "ref.json").write_text(argv[1])
        argv = ["--reference", str(tmp_path / "ref.json")]
    assert main(["bench", "speed", "--quick", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("offdiff: error:") and message in err and "\n" not in err


def test_reference_file_replaces_the_issue_figures(tmp_path, capsys, restore_threads):
    ref = tmp_path / "official-here.json"
    ref.write_text(json.dumps({"machine": "this one", "figures": {"dql train main": 8.0, "dql act 10 envs": 50.0}}))
    out = tmp_path / "quick.json"
    assert main(["bench", "speed", "--quick", "--algos", "dql", "--threads", "1", "--reference", str(ref),
                 "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["reference"] == str(ref) and "--reference" in payload["command"]
    by_label = {(r["measure"], r["label"]): r for r in payload["results"]}
    assert by_label[("train", "main")]["reference"] == 8.0 and by_label[("train", "main")]["goal_ratio"] == 1.5
    act10 = by_label[("act", "10 envs")]
    assert act10["ratio_to_reference"] == pytest.approx(act10["value"] / 50)
    assert by_label[("act", "20 envs")]["reference"] is None  # not in the file: no issue figure slips in


@pytest.mark.slow
def test_concurrent_loops_report_their_aggregate_and_the_ratio_to_one_loop(tmp_path, capsys, restore_threads):
    out = tmp_path / "concurrent.json"
    assert main(["bench", "speed", "--quick", "--algos", "dql", "--concurrent", "2", "--threads", "1",
                 "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert "--concurrent 2" in payload["command"] and payload["settings"]["concurrent_loops"] == [1, 2]
    assert payload["failures"] == []
    rows = {(r["label"], r["size"]["loops"]): r for r in payload["results"]}
    assert set(rows) == {("main", 1), ("main", 2)} and all(r["measure"] == "concurrent" for r in rows.values())
    one, two = rows[("main", 1)], rows[("main", 2)]
    assert one["size"] == {"batch": 256, "loops": 1, "threads": 1} and one["speedup_over_one_loop"] == 1.0
    assert two["speedup_over_one_loop"] == pytest.approx(two["value"] / one["value"])
    assert all(math.isfinite(x) and x > 0 for r in rows.values() for x in [r["value"], *r["repeats"]])
    assert "| vs 1 loop |" in capsys.readouterr().out
