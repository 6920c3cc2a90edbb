"""Grid specs (`benchmarks/grids/*.yaml`): datasets × algorithm entries (overrides, sweeps) × seeds -> runs.

```yaml
name: quickstart                 # the runs subfolder: runs/<name>/<algo>/<dataset>/<config-hash>/seed_<s>
datasets: [toy:four_corners]     # a source, or a mapping {source: ..., eval_env: ..., task: ..., ref_scores: ...}
  # e.g. {source: "hdf5:/data/my-hopper.hdf5", eval_env: Hopper-v4, task: hopper-medium, ref_scores: [-20.3, 3234.3]}
  # task: the preset's task (`none`: the paper's defaults); ref_scores: [MIN, MAX] or d4rl (README, Datasets)
seeds: [0, 1]
algorithms:
  - dql                          # the paper's defaults, then its preset for each task
  - name: dql_bc                 # a named entry: the same plugin with its own overrides
    algo: dql
    overrides: {eta: 0.0}
    sweep: {lr: [1.0e-4, 3.0e-4]}  # every combination of the listed values is a cell
budget: {steps: 2000}            # every stage's step budget (as `offdiff train --steps`; overrides come after)
protocol: {eval_every: 1000, eval_episodes: 100, checkpoint_every: 500}
compile: auto                    # torch.compile each run's steps: true, false, or auto (on from 50k steps)
keep: all                        # final: a finished run keeps only its final weights (weights.pt), not checkpoint.pt
log: [tensorboard]               # live tracking: tensorboard and/or wandb (offline unless WANDB_MODE), [] for none
resources: {runs_per_job: 4, time_min: 60}   # job-shape keys of the profile, for this grid
```

Everything is checked on load, and a mistake names its file and line. The full reference, with the order in
which config values apply: docs/grids.md.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from pathlib import Path
from typing import Any

from offdiff.algorithm import Algorithm
from offdiff.data.sources import ResolvedDataset, resolve_dataset
from offdiff.errors import OffdiffError
from offdiff.harness.profile import job_shape
from offdiff.harness.yamlspec import Located, LocatedList, check_keys, expect, load_yaml, typed, typed_fields
from offdiff.registry import get_algorithm
from offdiff.tracking import parse_log
from offdiff.train.protocol import Protocol
from offdiff.train.runner import PlannedRun, TrainRequest, plan

GRID_KEYS = ("name", "datasets", "seeds", "algorithms", "budget", "protocol", "compile", "keep", "log", "resources")
KEEP = ("all", "final")
ENTRY_KEYS = ("algo", "name", "overrides", "sweep")
PROTOCOL_KEYS = tuple(f.name for f in dataclasses.fields(Protocol))
BUDGET_KEYS = ("steps",)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclasses.dataclass(frozen=True)
class Dataset:
    source: str
    eval_env: str | None
    where: str
    resolved: ResolvedDataset  # resolved once, when the grid is loaded, for all its runs
    task: str | None = None
    ref_scores: str | None = None  # as `--ref-scores`: "MIN,MAX" or "d4rl"


@dataclasses.dataclass(frozen=True)
class AlgoEntry:
    name: str
    algo: str
    cls: type[Algorithm]
    overrides: dict[str, Any]
    sweep: dict[str, list[Any]]
    where: str

    def combinations(self) -> list[dict[str, Any]]:
        keys = list(self.sweep)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.sweep.values())]


@dataclasses.dataclass(frozen=True)
class Grid:
    path: Path
    name: str
    datasets: tuple[Dataset, ...]
    seeds: tuple[int, ...]
    algorithms: tuple[AlgoEntry, ...]
    steps: int | None  # the grid's `budget: {steps: N}`: TrainRequest.steps of every run
    protocol: dict[str, Any]
    compile: bool | None  # None: auto
    resources: dict[str, Any]
    keep: str = "all"  # TrainRequest.keep of every run; `grid submit --keep` overrides it
    log: tuple[str, ...] = ("tensorboard",)  # TrainRequest.log of every run


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a grid: its label (entry name and swept values) and its planned run folder."""

    label: str
    planned: PlannedRun
    grid_root: Path

    @functools.cached_property
    def key(self) -> str:
        """The run folder relative to the grid's folder: how the harness's records name a run."""
        return self.planned.run_dir.path.relative_to(self.grid_root).as_posix()


def _datasets(data: Located) -> tuple[Dataset, ...]:
    items = expect(data["datasets"], list, data.where("datasets"), "datasets is a list of dataset sources")
    found = []
    for i, item in enumerate(items):
        where = items.where(i)
        task = ref_scores = None
        if isinstance(item, dict):
            check_keys(item, ("source", "eval_env", "task", "ref_scores"), "a dataset", required=("source",))
            source, eval_env, task = item["source"], item.get("eval_env"), item.get("task")
            expect(eval_env, (str, type(None)), item.where("eval_env"), "eval_env is a gymnasium id")
            expect(task, (str, type(None)), item.where("task"), "task is a preset's task, e.g. hopper-medium, or none")
            ref_scores = _ref_scores(item)
        else:
            source, eval_env = item, None
        expect(source, str, where, "a dataset is a source such as toy:four_corners or minari:<id>")
        try:  # a dataset that is not local, or has no reference scores, fails here, not on the cluster
            resolved = resolve_dataset(source, eval_env, ref_scores)
        except OffdiffError as exc:
            raise OffdiffError(f"{where}: {exc}") from None
        found.append(Dataset(source, eval_env, where, resolved, task, ref_scores))
    if not found:
        raise OffdiffError(f"{data.where('datasets')}: datasets is empty")
    return tuple(found)


def _ref_scores(item: Located) -> str | None:
    """A dataset's `ref_scores:` ([MIN, MAX] or d4rl) in `--ref-scores` form."""
    value = item.get("ref_scores")
    if value is None or value == "d4rl":
        return value
    pair = expect(value, list, item.where("ref_scores"), "ref_scores is [MIN, MAX] or d4rl")
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair):
        raise OffdiffError(f"{item.where('ref_scores')}: ref_scores is [MIN, MAX] (two numbers) or d4rl, got {value!r}")
    return f"{pair[0]},{pair[1]}"


def _seeds(data: Located) -> tuple[int, ...]:
    items = expect(data["seeds"], list, data.where("seeds"), "seeds is a list of integers, e.g. [0, 1, 2]")
    for i, seed in enumerate(items):
        expect(seed, int, items.where(i), "a seed is a non-negative integer")
        if seed < 0 or seed in items[:i]:
            raise OffdiffError(f"{items.where(i)}: seed {seed} is negative or repeated")
    if not items:
        raise OffdiffError(f"{data.where('seeds')}: seeds is empty")
    return tuple(items)


def _entry(items: LocatedList, index: int) -> AlgoEntry:
    item = items[index]
    if isinstance(item, str):  # `- dql`: the plugin with its defaults
        item = Located.at(items.path, items.lines[index], {"algo": item})
    expect(item, dict, items.where(index), "an algorithm entry is a name or a mapping with `algo:`")
    check_keys(item, ENTRY_KEYS, "an algorithm entry", required=("algo",))
    algo = expect(item["algo"], str, item.where("algo"), "algo is a registered algorithm name (`offdiff algos`)")
    try:
        cls = get_algorithm(algo)
    except OffdiffError as exc:
        raise OffdiffError(f"{item.where('algo')}: {exc}") from None
    config = cls.Config()
    name = expect(item.get("name", algo), str, item.where("name"), "name is a label")
    overrides = item.get("overrides", {})
    expect(overrides, dict, item.where("overrides"), "overrides is a mapping of config keys to values")
    for key, value in overrides.items():
        typed(config, key, value, overrides.where(key))
    sweep = item.get("sweep", {})
    expect(sweep, dict, item.where("sweep"), "sweep is a mapping of config keys to lists of values")
    for key, values in sweep.items():
        expect(values, list, sweep.where(key), f"sweep {key!r} is a non-empty list of values")
        if not values or key in overrides:
            raise OffdiffError(f"{sweep.where(key)}: sweep {key!r} is empty or also set in overrides")
        for i, value in enumerate(values):
            typed(config, key, value, values.where(i))
    return AlgoEntry(name, algo, cls, dict(overrides), {k: list(v) for k, v in sweep.items()}, item.where())


def _algorithms(data: Located) -> tuple[AlgoEntry, ...]:
    items = expect(data["algorithms"], list, data.where("algorithms"), "algorithms is a list of entries")
    entries = [_entry(items, i) for i in range(len(items))]
    names = [e.name for e in entries]
    for entry in entries:
        if names.count(entry.name) > 1:
            raise OffdiffError(f"{entry.where}: two algorithm entries are named {entry.name!r}; "
                               f"give each its own `name:`")
    if not entries:
        raise OffdiffError(f"{data.where('algorithms')}: algorithms is empty")
    return tuple(entries)


def _budget(data: Located) -> int | None:
    """`budget: {steps: N}`: every stage's step budget (None: the configs' own)."""
    values = data.get("budget", Located(data.path, data.line))
    expect(values, dict, data.where("budget"), "budget is a mapping: {steps: N}")
    check_keys(values, BUDGET_KEYS, "budget")
    steps = values.get("steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise OffdiffError(f"{values.where('steps')}: steps is a positive integer, got {steps!r}")
    return steps


def _protocol(data: Located) -> dict[str, Any]:
    values = data.get("protocol", Located(data.path, data.line))
    expect(values, dict, data.where("protocol"), "protocol is a mapping (eval_every, eval_episodes, ...)")
    if "steps" in values:  # where the step budget used to be: one clear line, not "unknown key"
        raise OffdiffError(f"{values.where('steps')}: the step budget is no longer a protocol key: write "
                           f"`budget: {{steps: {values['steps']}}}` at the grid's top level (docs/grids.md)")
    check_keys(values, PROTOCOL_KEYS, "protocol")
    typed = typed_fields(Protocol(), values, values, {})  # ranges: Protocol's fields
    return {key: getattr(typed, key) for key in values}


def load_grid(path: Path) -> Grid:
    """Read and check a grid spec: keys, algorithms, config values, local datasets, protocol, resources."""
    path = Path(path)
    data = load_yaml(path, "grid spec")
    check_keys(data, GRID_KEYS, "a grid spec", required=("name", "datasets", "seeds", "algorithms"))
    name = expect(data["name"], str, data.where("name"), "name is the grid's runs subfolder")
    if not NAME.fullmatch(name):
        raise OffdiffError(f"{data.where('name')}: name {name!r} must be a plain folder name (letters, digits, ._-)")
    steps, protocol = _budget(data), _protocol(data)
    compiled = data.get("compile", "auto")
    compiled = None if compiled == "auto" else expect(compiled, bool, data.where("compile"),
                                                      "compile is true, false or auto")
    keep = data.get("keep", "all")
    if keep not in KEEP:
        raise OffdiffError(f"{data.where('keep')}: keep is all or final, got {keep!r}")
    log = expect(data.get("log", ["tensorboard"]), list, data.where("log"), "log is a list such as [tensorboard]")
    try:
        log = parse_log(list(log)) if log else ()
    except OffdiffError as exc:
        raise OffdiffError(f"{data.where('log')}: {exc}") from None
    resources = data.get("resources", Located(path, data.line))
    expect(resources, dict, data.where("resources"), "resources is a mapping of job-shape keys")
    return Grid(path, name, _datasets(data), _seeds(data), _algorithms(data), steps, protocol, compiled,
                job_shape(resources), keep, log)


def expand(grid: Grid, runs_root: Path) -> list[Cell]:
    """Every cell of the grid with its run folder under `runs_root/<grid name>` (no data is loaded)."""
    grid_root = Path(runs_root) / grid.name
    cells: dict[Path, Cell] = {}
    for dataset, entry in itertools.product(grid.datasets, grid.algorithms):
        for combo in entry.combinations():
            label = entry.name + (f"[{','.join(f'{k}={v}' for k, v in combo.items())}]" if combo else "")
            for seed in grid.seeds:
                request = TrainRequest(
                    algo=entry.algo, source=dataset.source, seed=seed, eval_env=dataset.eval_env,
                    overrides={**entry.overrides, **combo}, protocol=grid.protocol, steps=grid.steps,
                    runs_root=Path(runs_root), grid=grid.name, compile=grid.compile, task=dataset.task,
                    ref_scores=dataset.ref_scores, keep=grid.keep, log=grid.log,
                )
                try:
                    planned = plan(request, dataset.resolved, entry.cls)
                except OffdiffError as exc:
                    raise OffdiffError(f"{entry.where}: {label} on {dataset.source}: {exc}") from None
                path = planned.run_dir.path
                if path in cells:
                    raise OffdiffError(f"{entry.where}: {label} seed {seed} on {dataset.source} is the same run as "
                                       f"{cells[path].label} (same resolved config); drop one of them")
                cells[path] = Cell(f"{label} {dataset.source} seed={seed}", planned, grid_root)
    return list(cells.values())
