"""Resolving an algorithm config: paper defaults, then the task preset, then the user's `key=value` overrides."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Mapping
from typing import Any

import yaml

from offdiff.errors import OffdiffError


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`["lr=1e-4", "eta=2"]` -> `{"lr": "1e-4", "eta": "2"}`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OffdiffError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def budget(default: int) -> Any:
    """A config field that is a training-step budget (a stage length): `--steps N` sets every such field.

    Other integer fields whose names happen to end in "steps" (e.g. diffusion or solver steps) are untouched.
    """
    return dataclasses.field(default=default, metadata={"budget": True})


def budget_fields(config_cls: Any) -> list[str]:
    """Names of the fields of a config dataclass declared with `budget(...)`."""
    return [f.name for f in dataclasses.fields(config_cls) if f.metadata.get("budget")]


def _as_number(value: Any) -> Any:
    """YAML 1.1 reads "1e3" as a string: accept scientific notation without a dot as a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a CLI/YAML value into the field's declared type (int, float, bool, str, Literal)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        parsed = value if not isinstance(value, str) or str in map(type, choices) else yaml.safe_load(value)
        if parsed not in choices:
            raise OffdiffError(f"{key}={value!r} is not one of {list(choices)}")
        return parsed
    if annotation is str:
        return str(value)
    parsed = yaml.safe_load(value) if isinstance(value, str) else value
    if annotation is bool:
        if not isinstance(parsed, bool):
            raise OffdiffError(f"{key} expects true/false, got {value!r}")
        return parsed
    if annotation in (int, float):
        parsed = _as_number(parsed)
    if annotation is int:
        if isinstance(parsed, float) and parsed.is_integer():
            parsed = int(parsed)
        if not isinstance(parsed, int) or isinstance(parsed, bool):
            raise OffdiffError(f"{key} expects an integer, got {value!r}")
        return parsed
    if annotation is float:
        if not isinstance(parsed, (int, float)) or isinstance(parsed, bool):
            raise OffdiffError(f"{key} expects a number, got {value!r}")
        return float(parsed)
    return parsed


def apply_overrides(config: Any, overrides: Mapping[str, Any], origin: str = "--set") -> Any:
    """A copy of a frozen config dataclass with typed overrides; an unknown key is a clear error."""
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise OffdiffError(
            f"{origin}: unknown config key(s) {unknown} for {type(config).__qualname__}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(config, **{k: _coerce(v, hints[k], k) for k, v in overrides.items()})


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def stable_hash(payload: Any, length: int = 10) -> str:
    """A short, stable hash of JSON-able data (sorted keys), used for run folder names and cache keys."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
