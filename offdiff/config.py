"""Resolving an algorithm config: paper defaults, then the task preset, then the user's `key=value` overrides."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
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


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts: `low` and/or `high`, each end closed unless marked open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
UNIT = Range(0, 1)  # [0, 1]
FRACTION = Range(0, 1, low_open=True)  # (0, 1]
RATE = Range(0, 1, low_open=True, high_open=True)  # (0, 1): Polyak rates, discounts, expectiles


def at_least(low: float) -> Range:
    return Range(low)


def field(default: Any, doc: str, check: Range | None = None, budget: bool = False,
          hashed_at_default: bool = True) -> Any:
    """A documented config field: `doc` is its one line for `offdiff algos NAME`, `check` the values it accepts
    (floats must also be finite). Every override (preset, `--steps`, `--set`, a grid's entry) is checked on arrival,
    before any run folder exists. A field added after runs exist says `hashed_at_default=False`: at its default it
    stays out of the run folder's hash (`hashed_config`), so earlier runs keep their folders."""
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check, "budget": budget,
                                                        "hashed_at_default": hashed_at_default})


def budget(default: int, doc: str) -> Any:
    """A config field that is a training-step budget (a stage length): `--steps N` sets every such field.

    Other integer fields whose names happen to end in "steps" (e.g. diffusion or solver steps) are untouched.
    """
    return field(default, doc, AT_LEAST_1, budget=True)


def budget_fields(config_cls: Any) -> list[str]:
    """Names of the fields of a config dataclass declared with `budget(...)`."""
    return [f.name for f in dataclasses.fields(config_cls) if f.metadata.get("budget")]


def field_doc(f: dataclasses.Field) -> str:
    return f.metadata.get("doc", "")


def field_check(f: dataclasses.Field) -> Range | None:
    return f.metadata.get("check")


def check_value(f: dataclasses.Field, value: Any, origin: str) -> None:
    """A one-line error if `value` is outside what field `f` accepts (a float must be finite)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise OffdiffError(f"{origin}: {f.name}={value!r} must be a finite number")
    check = field_check(f)
    if check is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value not in check:
        raise OffdiffError(f"{origin}: {f.name}={value!r} must be {check} ({field_doc(f) or f.name})")


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints` of a config class, once per class: a 1,000-run grid checks its configs 6,000 times."""
    return typing.get_type_hints(cls)


@functools.cache
def _literal_choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """The choices of each Literal field of a config class."""
    return {name: typing.get_args(hint) for name, hint in type_hints(cls).items()
            if typing.get_origin(hint) is typing.Literal}


def check_config(config: Any, origin: str) -> None:
    """Every field of a config dataclass within its declared range (and a Literal field one of its choices)."""
    choices = _literal_choices(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in choices and value not in choices[f.name]:
            raise OffdiffError(f"{origin}: {f.name}={value!r} is not one of {list(choices[f.name])}")
        check_value(f, value, origin)


def _as_number(value: Any) -> Any:
    """YAML 1.1 reads "1e3" as a string: accept scientific notation without a dot as a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(value: Any, annotation: Any, key: str, origin: str) -> Any:
    """Turn a CLI/YAML value into the field's declared type (int, float, bool, str, Literal)."""
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        parsed = value if not isinstance(value, str) or str in map(type, choices) else yaml.safe_load(value)
        if parsed not in choices:
            raise OffdiffError(f"{origin}: {key}={value!r} is not one of {list(choices)}")
        return parsed
    if annotation is str:
        return str(value)
    parsed = yaml.safe_load(value) if isinstance(value, str) else value
    if annotation is bool:
        if not isinstance(parsed, bool):
            raise OffdiffError(f"{origin}: {key} expects true/false, got {value!r}")
        return parsed
    if annotation in (int, float):
        parsed = _as_number(parsed)
    if annotation is int:
        if isinstance(parsed, float) and parsed.is_integer():
            parsed = int(parsed)
        if not isinstance(parsed, int) or isinstance(parsed, bool):
            raise OffdiffError(f"{origin}: {key} expects an integer, got {value!r}")
        return parsed
    if annotation is float:
        if not isinstance(parsed, (int, float)) or isinstance(parsed, bool):
            raise OffdiffError(f"{origin}: {key} expects a number, got {value!r}")
        return float(parsed)
    return parsed


def apply_overrides(config: Any, overrides: Mapping[str, Any], origin: str = "--set") -> Any:
    """A copy of a frozen config dataclass with typed, range-checked overrides; an unknown key is a clear error."""
    hints = type_hints(type(config))
    fields = {f.name: f for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise OffdiffError(
            f"{origin}: unknown config key(s) {unknown} for {type(config).__qualname__}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    typed = {k: _coerce(v, hints[k], k, origin) for k, v in overrides.items()}
    for key, value in typed.items():
        check_value(fields[key], value, origin)
    try:
        return dataclasses.replace(config, **typed)
    except OffdiffError as exc:  # a rule across fields, checked by the config itself
        raise OffdiffError(f"{origin}: {exc}") from None


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def hashed_config(config: Any) -> dict[str, Any]:
    """The config as a run folder's hash sees it: every field but those declared `hashed_at_default=False` while
    they hold their default."""
    values = config_dict(config)
    return {f.name: values[f.name] for f in dataclasses.fields(config)
            if f.metadata.get("hashed_at_default", True) or values[f.name] != f.default}


def stable_hash(payload: Any, length: int = 10) -> str:
    """A short, stable hash of JSON-able data (sorted keys), used for run folder names and cache keys."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
