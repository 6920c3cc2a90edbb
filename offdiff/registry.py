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


def _registered() -> dict[str, PluginInfo]:
    """Every registered plugin by name; two packages registering one name is an error naming both."""
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist
        info = PluginInfo(name=ep.name, target=ep.value, package=dist.metadata["Name"] if dist else "?",
                          version=dist.version if dist else "?")
        other = found.setdefault(ep.name, info)
        if other != info:  # the same distribution seen twice on sys.path registers the same plugin: no clash
            raise OffdiffError(
                f"two packages register the algorithm {ep.name!r}: {other.package} {other.version} ({other.target}) "
                f"and {info.package} {info.version} ({info.target}); uninstall or rename one of them"
            )
    return found


def plugins() -> dict[str, PluginInfo]:
    """Every registered plugin by name, without importing it."""
    return dict(sorted(_registered().items()))


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class registered under `name`; an unknown name or a broken entry point is a clear error."""
    found = _registered()
    if name not in found:
        known = ", ".join(sorted(found)) or "none (is offdiff installed with `pip install -e .`?)"
        raise OffdiffError(f"unknown algorithm {name!r}; registered: {known}")
    info = found[name]
    ep = next(ep for ep in entry_points(group=GROUP) if ep.name == name)
    try:
        cls = ep.load()
    except (ImportError, AttributeError) as exc:
        raise OffdiffError(f"plugin {name!r} of {info.package} points to {info.target}, which does not load "
                           f"({type(exc).__name__}: {exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise OffdiffError(f"plugin {name!r} ({info.target}) is not an offdiff Algorithm subclass")
    return cls
