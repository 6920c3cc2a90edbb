"""Score against compute (offdiff/analysis/compute.py): the Pareto front, each algorithm's point from the
diagnostics' compute rows (cached stages counted at their producer's cost), and what is left out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offdiff.analysis import compute
from offdiff.analysis.diagnostics import COLUMNS
from offdiff.analysis.layout import Layout, present
from offdiff.analysis.stats import Estimate
from offdiff.errors import OffdiffError


def test_the_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    xy = [(3.0, 20.0), (1.0, 10.0), (2.0, 5.0), (4.0, 15.0), (1.0, 8.0), (5.0, 25.0)]
    assert compute.pareto_front(xy) == [1, 0, 5]
    assert compute.pareto_front([]) == []


def _scores(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"algorithm": a, "algo": algo, "dataset": "toy/gaussians8", "task": "toy-gaussians8",
                          "seed": seed, "is_last": True, "done": True, "normalized": 50.0,
                          "run_dir": f"runs/{a}/{seed}"}
                         for a, algo, seed in rows])


def _compute_row(run: str, stage: str, index: int, device_s: float | None, cached: bool = False,
                 cached_s: float | None = None, acting: float | None = None, train_s: float | None = None,
                 cached_train_s: float | None = None) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(run_dir=run, kind="compute", stage=stage, stage_index=index, device="cpu:x86_64 x1 threads",
               device_s=device_s, cached=cached, cached_device_s=cached_s, actions_per_s=acting, train_s=train_s,
               cached_train_s=cached_train_s)
    return row


def test_points_count_cached_stages_at_their_producers_cost_and_leave_unknown_compute_out():
    frame = _scores([("eda", "eda", 0), ("eda", "eda", 1), ("eda@1%", "eda", 0), ("dql", "dql", 0)])
    rows = [_compute_row("runs/eda/0", "behavior", 0, 10.0, train_s=9.0),
            _compute_row("runs/eda/0", "align", 1, 5.0, acting=300.0, train_s=4.0),
            _compute_row("runs/eda/1", "behavior", 0, 0.5, cached=True, cached_s=12.0, train_s=0.0,
                         cached_train_s=11.0),
            _compute_row("runs/eda/1", "align", 1, 6.0, acting=100.0, train_s=5.0),
            _compute_row("runs/eda@1%/0", "behavior", 0, 1.0), _compute_row("runs/eda@1%/0", "align", 1, 1.0),
            _compute_row("runs/dql/0", "main", 0, None)]
    diagnostics = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"actions_per_s": float, "device_s": float})
    shown = present(frame, Layout(), lambda name: name)
    estimates = {name: {"IQM": Estimate(50.0, 40.0, 60.0)} for name in shown.algorithm_names}
    found, unknown = compute.points(frame, diagnostics, estimates, shown.task_names, shown)
    assert unknown == ["dql"]
    by_name = {p.algorithm: p for p in found}
    assert by_name["eda"].device_s == (15.0, 18.5) and by_name["eda"].actions_per_s == (300.0, 100.0)
    assert by_name["eda"].train_s == (13.0, 16.0), "training seconds, a cached stage at its producer's"
    assert by_name["eda@1%"].train_s == (None,), "a run older than the training-seconds record"
    assert by_name["eda@1%"].actions_per_s == () and by_name["eda@1%"].plugin == "eda"
    table = compute.table(found, unknown)
    assert "| eda | 2 | 50.0 [40.0, 60.0] | cpu:x86_64 x1 threads | 17 (15–18) | 14 (13–16) | 200 (100–300) |" in table
    assert "| eda@1% | 1 | 50.0 [40.0, 60.0] | cpu:x86_64 x1 threads | 2 | — | — |" in table
    assert "Left out" in table and "dql" in table.split("Left out")[1]
    fig = compute.figure(found, shown)
    assert len(fig.axes) == 2  # device time and actions/s
    assert fig.axes[0].get_xlabel().startswith("device-seconds")
    lines = [line for line in fig.axes[0].lines if line.get_linestyle() == "-" and len(line.get_xdata()) == 2]
    assert np.allclose(sorted(lines[0].get_xdata()), [2.0, 16.75])  # the two eda labels joined by one line


def test_without_timed_acting_the_figure_has_the_compute_panel_only():
    frame = _scores([("dtql", "dtql", 0)])
    diagnostics = pd.DataFrame([_compute_row("runs/dtql/0", "main", 0, 7200.0)], columns=list(COLUMNS))
    shown = present(frame, Layout(), lambda name: name)
    found, _ = compute.points(frame, diagnostics, {"dtql": {"IQM": Estimate(1.0, None, None)}}, shown.task_names,
                              shown)
    fig = compute.figure(found, shown)
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel().startswith("device-hours")
    assert compute.table(found, [])[0:2] == "| "
    assert "50.0" not in compute.table(found, []) and "1.0 |" in compute.table(found, [])


@pytest.mark.parametrize("header_cut", [0, 2, 4, 5])
def test_diagnostics_csvs_of_every_generation_parse(header_cut):
    """Today's header, the one before training seconds (train_s, cached_train_s), the one before the stage reports
    (metric, value) and the one before acting throughput."""
    from offdiff.analysis.diagnostics import parse_csv
    columns = COLUMNS[:len(COLUMNS) - header_cut]
    data = (",".join(columns) + "\n").encode()
    assert list(parse_csv(data, "d.csv").columns) == list(COLUMNS)


def test_a_diagnostics_csv_cut_inside_a_generation_is_refused():
    from offdiff.analysis.diagnostics import parse_csv
    with pytest.raises(OffdiffError, match="not an offdiff diagnostics CSV"):
        parse_csv((",".join(COLUMNS[:-1]) + "\n").encode(), "d.csv")
