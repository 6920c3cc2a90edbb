"""What a config means and what a run would do: `offdiff algos NAME [--dataset]` and `offdiff train --dry-run`."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from offdiff.algorithm import Algorithm
from offdiff.config import budget_fields, field_check, field_doc
from offdiff.train.protocol import Protocol
from offdiff.train.runner import PlannedRun, TrainRequest


def type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(map(str, typing.get_args(annotation)))
    return getattr(annotation, "__name__", str(annotation))


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
            for row in rows]


def fields_table(config_cls: type, extra: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """One line per field: key, type, default, [extra columns], accepted values, doc. Budget fields say so."""
    extra = extra or {}
    hints = typing.get_type_hints(config_cls)
    budgets = set(budget_fields(config_cls))
    rows = [["key", "type", "default", *extra, "accepts", "doc"]]
    for f in dataclasses.fields(config_cls):
        check = field_check(f)
        accepts = str(check) if check else ("finite" if hints[f.name] is float else "")
        doc = field_doc(f) + (" [a step budget: --steps sets it]" if f.name in budgets else "")
        cells = [str(column.get(f.name, "")) for column in extra.values()]
        rows.append([f.name, type_name(hints[f.name]), str(f.default), *cells, accepts, doc])
    return _table(rows)


def describe_algorithm(cls: type[Algorithm], planned: PlannedRun | None) -> list[str]:
    """`offdiff algos NAME`: every config key documented; with a planned run, the task's preset and the resolved
    config, and the protocol the run would use."""
    lines = [f"{cls.name}: {cls.__module__}.{cls.__qualname__}", "", "config (train --set KEY=VALUE, grid overrides):"]
    if planned is None:
        lines += fields_table(cls.Config)
        lines += ["", "protocol (train --eval-every ..., a grid's protocol:; defaults depend on the task):"]
        return lines + fields_table(Protocol)
    task, preset = planned.choice.task, planned.choice.keys
    lines[2:2] = [f"dataset {planned.request.source}: {planned.choice.describe()}"]
    resolved = dataclasses.asdict(planned.config)
    lines += fields_table(cls.Config, {"preset": preset, "resolved": resolved})
    lines += ["", f"protocol for {task} (train --eval-every ..., a grid's protocol:):"]
    return lines + fields_table(Protocol, {"resolved": dataclasses.asdict(planned.protocol)})


def origins(cls: type[Algorithm], planned: PlannedRun) -> dict[str, str]:
    """Where each resolved config value came from: default, preset, --steps or --set (the last one wins)."""
    request: TrainRequest = planned.request
    found = dict.fromkeys((f.name for f in dataclasses.fields(planned.config)), "default")
    found.update(dict.fromkeys(planned.choice.keys, "preset"))
    if request.steps is not None:
        found.update(dict.fromkeys(budget_fields(planned.config), "--steps"))
    found.update(dict.fromkeys(request.overrides, "--set"))
    return found


def describe_run(planned: PlannedRun) -> list[str]:
    """`offdiff train --dry-run`: the run folder and its state, the resolved config with each value's origin, the
    protocol and the stages (from the config: no network is built, no data is loaded, nothing is written)."""
    run, cls = planned.run_dir, planned.cls
    state = ("done (DONE marker present)" if run.is_done() else
             "resumes from its checkpoint" if run.checkpoint.exists() else "new")
    where = origins(cls, planned)
    lines = [f"run folder: {run.path} ({state})",
             f"algorithm {cls.name} on {planned.request.source}, seed {planned.request.seed}",
             *planned.describe(),
             "config (defaults < preset < --steps < --set):"]
    lines += [f"  {k} = {v!r}" + (f"   [{where[k]}]" if where[k] != "default" else "")
              for k, v in dataclasses.asdict(planned.config).items()]
    lines.append("protocol: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(planned.protocol).items()))
    lines.append("stages:")
    lines += [f"  {s.name}: {s.steps} steps x batch {s.batch_size}"
              + (", evaluated" if s.evaluate else ", not evaluated") + (", cacheable" if s.cacheable else "")
              + (f"; then diagnostic policy {s.diagnostic_policy}" if s.diagnostic_policy else "")
              + ("; then Q calibration" if s.q_calibration else "")
              for s in planned.stages]
    return lines
