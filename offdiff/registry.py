"""Algorithm plugins, discovered through the entry-point group `offdiff.algorithms`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from offdiff.algorithm import Algorithm
from offdiff.errors import OffdiffError

GROUP = "offdiff.algorithms"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    target: str
    package: str
    version: str


def plugins() -> dict[str, PluginInfo]:
    """Every registered plugin by name, without importing it."""
    found = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist
        found[ep.name] = PluginInfo(
            name=ep.name,
            target=ep.value,
            package=dist.metadata["Name"] if dist else "?",
            version=dist.version if dist else "?",
        )
    return dict(sorted(found.items()))


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class registered under `name`; an unknown name is a clear error."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
                raise OffdiffError(f"plugin {name!r} ({ep.value}) is not an offdiff Algorithm subclass")
            return cls
    known = ", ".join(plugins()) or "none (is offdiff installed with `pip install -e .`?)"
    raise OffdiffError(f"unknown algorithm {name!r}; registered: {known}")
