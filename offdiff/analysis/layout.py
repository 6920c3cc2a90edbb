"""How a collection is shown: names, order, domains and colours of its algorithms and tasks.

Defaults, each a documented rule:
- an algorithm is named by its plugin's `display_name` (e.g. "Diffusion-QL"; the registry name when the
  plugin is not installed), and a sweep label keeps its config suffix (`eda[beta=0.1]` -> `EDA[beta=0.1]`);
  algorithms come in the order of their labels;
- a task is named by its task key (`hopper-medium`), or by its dataset id when two datasets share a key;
  tasks are grouped by domain (`DOMAINS`, from the key's environment family) in the papers' order;
- each algorithm has one colour, by its place in the order, from the Okabe-Ito colour-blind-safe palette.

A layout YAML (`offdiff aggregate --layout FILE`) overrides any of these: `names` (algorithm label or
dataset id -> display name), `algorithm_order` and `task_order` (labels or dataset ids; those not listed
follow in the default order), `domains` (dataset id -> domain), `tau_max` (the right end of the
performance profiles' axis) and `compare_published` (also write the table against the papers' numbers).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from offdiff.errors import OffdiffError

# Okabe & Ito (2008), without yellow (too pale on white); repeats with other line styles past the seventh.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
LINESTYLES = ("-", "--", ":", "-.")
DOMAINS: dict[str, tuple[str, ...]] = {
    "Locomotion": ("halfcheetah", "hopper", "walker2d", "ant", "humanoid", "swimmer"),
    "AntMaze": ("antmaze",),
    "Kitchen": ("kitchen",),
    "Adroit": ("pen", "door", "hammer", "relocate"),
    "Maze2D": ("maze2d", "pointmaze"),
    "MuJoCo control": ("inverteddoublependulum", "invertedpendulum", "reacher", "pusher"),
    "Toy bandits": ("toy",),
}
OTHER = "Other"
# The papers' row order within a domain: by dataset kind, then by environment.
KINDS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay", "umaze", "umaze-diverse",
         "medium-play", "medium-diverse", "large-play", "large-diverse", "human", "cloned", "complete", "partial",
         "mixed")
FAMILIES = tuple(f for families in DOMAINS.values() for f in families)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The user's overrides (all optional); `to_yaml` writes back the ones that are set."""

    names: dict[str, str] = dataclasses.field(default_factory=dict)
    algorithm_order: tuple[str, ...] = ()
    task_order: tuple[str, ...] = ()
    domains: dict[str, str] = dataclasses.field(default_factory=dict)
    tau_max: float | None = None
    compare_published: bool = False

    def to_yaml(self) -> str:
        """The set fields as YAML ('' when none is set): `--layout` of this text gives the same layout."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        set_fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()
                      if v != getattr(Layout(), k)}
        return yaml.safe_dump(set_fields, sort_keys=False, allow_unicode=True) if set_fields else ""


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _text_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(x, str) and x for x in (*value, *value.values()))


# key -> (check of its value, what the value must be)
_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "names": (_text_map, "a mapping of names to display names"),
    "algorithm_order": (_texts, "a list of names"),
    "task_order": (_texts, "a list of names"),
    "domains": (_text_map, "a mapping of dataset ids to domains"),
    "tau_max": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), "a number"),
    "compare_published": (lambda v: isinstance(v, bool), "true or false"),
}


def read_layout(path: Path) -> Layout:
    """Parse a layout YAML; an unknown key or a value of the wrong kind is a one-line error."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise OffdiffError(f"cannot read layout {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise OffdiffError(f"layout {path} must be a mapping with keys {', '.join(_KEYS)}")
    for key, value in raw.items():
        if key not in _KEYS:
            raise OffdiffError(f"layout {path}: unknown key {key!r} (known: {', '.join(_KEYS)})")
        check, expected = _KEYS[key]
        if not check(value):
            raise OffdiffError(f"layout {path}: {key} must be {expected}")
    return Layout(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def family_and_kind(task: str) -> tuple[str, str]:
    """`hopper-medium-replay` -> (`hopper`, `medium-replay`)."""
    family, _, kind = task.partition("-")
    return family, kind


def default_domain(task: str) -> str:
    family = family_and_kind(task)[0]
    return next((domain for domain, families in DOMAINS.items() if family in families), OTHER)


def _rank(value: str, known: Sequence[str]) -> tuple[int, str]:
    return (known.index(value), "") if value in known else (len(known), value)


@dataclasses.dataclass(frozen=True)
class Presentation:
    """The resolved names (in order), domains and colours of one collection."""

    algorithms: dict[str, str]  # label -> display name, in display order
    tasks: dict[str, str]  # dataset id -> display name, in display order
    domains: dict[str, str]  # display task name -> domain
    colors: dict[str, str]  # display algorithm name -> colour
    linestyles: dict[str, str]  # display algorithm name -> line style
    layout: Layout

    @property
    def algorithm_names(self) -> list[str]:
        return list(self.algorithms.values())

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks.values())


def _ordered(default: list[str], preferred: Sequence[str], what: str) -> list[str]:
    unknown = [x for x in preferred if x not in default]
    if unknown:
        raise OffdiffError(f"layout {what}: {', '.join(unknown)} not in this collection "
                           f"(it has {', '.join(default)})")
    return list(dict.fromkeys([*preferred, *default]))


def _unique(names: dict[str, str], what: str) -> dict[str, str]:
    seen: dict[str, str] = {}
    for key, name in names.items():
        if seen.setdefault(name, key) != key:
            raise OffdiffError(f"two {what} would both be shown as {name!r}: {seen[name]} and {key}; "
                               "give them different names in the layout")
    return names


def present(frame: pd.DataFrame, layout: Layout, display_name: Callable[[str], str]) -> Presentation:
    """Names, order, domains and colours for the scores CSV `frame` (columns algorithm, algo, dataset, task)."""
    algos = dict(frame[["algorithm", "algo"]].drop_duplicates().itertuples(index=False))
    tasks = dict(frame[["dataset", "task"]].drop_duplicates().itertuples(index=False))
    unknown = set(layout.names) - set(algos) - set(tasks)
    if unknown:
        raise OffdiffError(f"layout names: {', '.join(sorted(unknown))} is neither an algorithm label nor a "
                           "dataset id of this collection")
    unknown = set(layout.domains) - set(tasks)
    if unknown:
        raise OffdiffError(f"layout domains: {', '.join(sorted(unknown))} is not a dataset id of this collection")
    labels = _ordered(sorted(algos), layout.algorithm_order, "algorithm_order")
    algorithms = _unique({a: layout.names.get(a, display_name(algos[a]) + a[len(algos[a]):]) for a in labels},
                         "algorithms")
    shared = {t for t in tasks.values() if list(tasks.values()).count(t) > 1}
    task_name = {d: layout.names.get(d, d if t in shared else t) for d, t in tasks.items()}
    domain = {d: layout.domains.get(d, default_domain(t)) for d, t in tasks.items()}
    domain_order = list(DOMAINS) + [OTHER]

    def key(dataset: str) -> tuple:
        family, kind = family_and_kind(tasks[dataset])
        return (_rank(domain[dataset], domain_order), _rank(kind, KINDS), _rank(family, FAMILIES),
                task_name[dataset], dataset)

    datasets = _ordered(sorted(tasks, key=key), layout.task_order, "task_order")
    by_domain = sorted(datasets, key=lambda d: min(datasets.index(e) for e in datasets if domain[e] == domain[d]))
    shown = _unique({d: task_name[d] for d in by_domain}, "tasks")
    names = list(algorithms.values())
    return Presentation(
        algorithms=algorithms, tasks=shown, domains={shown[d]: domain[d] for d in by_domain},
        colors={a: PALETTE[i % len(PALETTE)] for i, a in enumerate(names)},
        linestyles={a: LINESTYLES[i // len(PALETTE) % len(LINESTYLES)] for i, a in enumerate(names)},
        layout=layout,
    )
