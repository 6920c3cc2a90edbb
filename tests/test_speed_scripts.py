"""The speed scripts in benchmarks/: paired rounds against a reference command, their collation, and
device_check.sh on a machine without CUDA (the path CI runs), which also runs the packing figure's script."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_pairs_alternate_sides_and_carry_each_pairs_reference(tmp_path):
    log = tmp_path / "order.log"
    fake = tmp_path / "fake_reference.py"  # figures 10, then 20 steps/s; logs when it ran
    fake.write_text(textwrap.dedent("""
        import json, pathlib, sys
        log, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
        done = len(list(out.parent.glob("dql-offdiff-*.json")))  # offdiff's JSONs already written
        with log.open("a") as f:
            f.write(f"{done}\\n")
        value = 10.0 * (1 + len(list(out.parent.glob("dql-official-*.json"))))
        out.write_text(json.dumps({"figures": {"dql train main": value}}))
        """))
    out = tmp_path / "pairs"
    _load("speed_pairs").main(["dql", "2", str(out), "--reference-cmd", f"{sys.executable} {fake} {log}", "--",
                               "--quick", "--threads", "1"])
    # pair 1: the reference ran first (no offdiff JSON yet); pair 2: offdiff first (its JSON was there)
    assert log.read_text().split() == ["0", "2"]
    for pair, ref in ((1, 10.0), (2, 20.0)):
        payload = json.loads((out / f"dql-offdiff-{pair}.json").read_text())
        assert payload["reference"] == str(out / f"dql-official-{pair}.json")
        train = next(r for r in payload["results"] if r["measure"] == "train")
        assert train["reference"] == ref and train["goal_ratio"] == 1.5
        assert train["ratio_to_reference"] == train["value"] / ref
        assert all(r["reference"] is None for r in payload["results"] if r["measure"] != "train")
        assert f"| {ref:.3g} |" in (out / f"dql-offdiff-{pair}.md").read_text()

    table = _load("speed_rounds").collate(sorted(out.glob("dql-offdiff-*.json")))
    header, _, row = table.splitlines()
    assert header.startswith("| figure | official | offdiff eager | eager / official |")
    assert row.startswith("| dql train main (steps/s) | 10 / 20 |") and row.endswith("| 1.5x |")


@pytest.mark.slow
def test_device_check_without_cuda_runs_its_cpu_parts_and_says_so(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                                            f"{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(BENCHMARKS / "device_check.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line for line in done.stdout.splitlines() if "no CUDA device here" in line] == [
        f"device_check: no CUDA device here (torch.cuda.is_available() is False): ran the CPU parts only, in {out}"]
    steps = [line.split("\t")[:2] for line in (out / "summary.tsv").read_text().splitlines()]
    assert steps == [["cpu-concurrent", "ok"], ["cpu-packing", "ok"]]
    bench = json.loads((out / "cpu-concurrent.json").read_text())
    assert sorted(r["size"]["loops"] for r in bench["results"]) == [1, 2] and bench["failures"] == []
    packing = json.loads((out / "cpu-packing" / "packing.json").read_text())
    assert [(r["k"], r["variant"]) for r in packing["summary"]] == [(2, "sequential"), (2, "concurrent")]
    concurrent = packing["summary"][1]
    assert concurrent["speedup_over_sequential"] == packing["summary"][0]["job_s_median"] / concurrent["job_s_median"]
    assert (out / "cpu-packing" / "packing.png").stat().st_size > 0



@pytest.mark.slow
def test_device_check_runs_only_the_steps_named_and_lists_the_others_as_skipped(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "STEPS": "cpu-concurrent",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(BENCHMARKS / "device_check.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line.split("\t")[:2] for line in (out / "summary.tsv").read_text().splitlines()]
    assert steps == [["cpu-concurrent", "ok"], ["cpu-packing", "skipped (not in STEPS)"]]
    assert not (out / "cpu-packing").exists()

def test_packing_summary_takes_medians_and_pairs_each_round_with_its_own_baseline():
    times = {(0, "sequential"): 40.0, (0, "sequential-all-cpus"): 30.0, (0, "concurrent"): 20.0,
             (1, "sequential"): 90.0, (1, "sequential-all-cpus"): 60.0, (1, "concurrent"): 60.0,
             (2, "sequential"): 50.0, (2, "sequential-all-cpus"): 50.0, (2, "concurrent"): 100.0}
    rows = [{"k": 2, "round": r, "variant": v, "job_s": t, "training_s": t - 1, "command_s": t + 5}
            for (r, v), t in times.items()]
    summary = {s["variant"]: s for s in _load("concurrency").summarize(rows)}
    concurrent = summary["concurrent"]
    assert concurrent["job_s_median"] == 60.0 and concurrent["job_s_range"] == [20.0, 100.0]
    assert concurrent["speedup_over_sequential"] == 1.5  # the rounds' ratios 2.0, 1.5, 0.5
    assert concurrent["speedup_over_sequential-all-cpus"] == 1.0  # 1.5, 1.0, 0.5
    assert summary["sequential"]["speedup_over_sequential"] == 1.0 and concurrent["rounds"] == 3
