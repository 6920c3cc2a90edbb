"""YAML files whose mistakes point at a line: every mapping and list remembers where its entries were written."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from offdiff.config import apply_overrides
from offdiff.errors import OffdiffError


class Located(dict):
    """A YAML mapping with the file and line of itself and of each key."""

    def __init__(self, path: Path, line: int):
        super().__init__()
        self.path, self.line, self.lines = path, line, {}

    @classmethod
    def at(cls, path: Path, line: int, values: Mapping[str, Any] | None = None) -> Located:
        """A mapping written in code (e.g. a default), located at `path:line`."""
        out = cls(path, line)
        out.update(values or {})
        return out

    def where(self, key: Any = None) -> str:
        return f"{self.path}:{self.lines.get(key, self.line)}"


class LocatedList(list):
    """A YAML sequence with the file and line of itself and of each item."""

    def __init__(self, path: Path, line: int):
        super().__init__()
        self.path, self.line, self.lines = path, line, []

    def where(self, index: int | None = None) -> str:
        return f"{self.path}:{self.line if index is None else self.lines[index]}"


def _convert(node: yaml.Node, loader: yaml.SafeLoader, path: Path) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # `<<: *anchor` merge keys
        out = Located(path, line)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise OffdiffError(f"{path}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
            out[key] = _convert(value_node, loader, path)
            out.lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        items = LocatedList(path, line)
        for item in node.value:
            items.append(_convert(item, loader, path))
            items.lines.append(item.start_mark.line + 1)
        return items
    return loader.construct_object(node, deep=True)


def load_yaml(path: Path, what: str) -> Located:
    """The top-level mapping of a YAML file; a missing file or bad YAML is a one-line error with its line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise OffdiffError(f"cannot read {what} {path}: {exc.strerror}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else _convert(node, loader, path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise OffdiffError(f"{path}{line}: not valid YAML: {exc.problem or exc.context}") from None
    finally:
        loader.dispose()
    if not isinstance(data, Located):
        raise OffdiffError(f"{path}: a {what} is a YAML mapping of keys (see the examples next to it)")
    return data


def check_keys(mapping: Located, allowed: Iterable[str], what: str, required: Iterable[str] = ()) -> None:
    """Every key is known (a misspelling names its closest valid key) and every required key is there."""
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OffdiffError(f"{mapping.where(key)}: unknown key {key!r} in {what}{hint}; "
                               f"valid: {', '.join(allowed)}")
    for key in required:
        if key not in mapping:
            raise OffdiffError(f"{mapping.where()}: {what} needs the key {key!r}")


def expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    """`value` if it is of `kind` (a bool counts only where bool is asked for), else a one-line error."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise OffdiffError(f"{where}: {what}, got {value!r}")
    return value


def typed(base: Any, key: str, value: Any, where: str) -> Any:
    """`base` (a frozen dataclass, e.g. a config) with `key` set to `value` as its field's type; errors name `where`."""
    return apply_overrides(base, {key: value}, origin=where)


def typed_fields(base: Any, values: Mapping[str, Any], source: Located, minimum: Mapping[str, float]) -> Any:
    """`base` with every one of `values` typed (see `typed`) and at least its `minimum`; errors name the line."""
    for key, value in values.items():
        base = typed(base, key, value, source.where(key))
        if key in minimum and getattr(base, key) < minimum[key]:
            raise OffdiffError(f"{source.where(key)}: {key} must be at least {minimum[key]}, got {value!r}")
    return base
