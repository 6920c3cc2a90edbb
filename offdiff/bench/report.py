"""The speed benchmark's output: ratios to the official implementations' throughput, the table and the JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from offdiff.bench.speed import Measured
from offdiff.errors import OffdiffError
from offdiff.io import atomic_write_bytes, atomic_write_json


@dataclasses.dataclass(frozen=True)
class Reference:
    """An official implementation's throughput on a 2-core CPU at the same settings, and the goal ratio."""

    value: float
    goal: float


def _packaged_references() -> dict[tuple[str, str, str], Reference]:
    """The default figures (`references.yaml`, shipped with offdiff), keyed (algorithm, measure, label)."""
    raw = yaml.safe_load(resources.files("offdiff.bench").joinpath("references.yaml").read_text())
    return {tuple(key.split(" ", 2)): Reference(float(v["value"]), float(v["goal"])) for key, v in raw.items()}


REFERENCES = _packaged_references()


def load_references(path: Path) -> dict[tuple[str, str, str], Reference]:
    """Reference figures measured elsewhere (e.g. the official code on this machine), with the issue's goals.

    The file is JSON: `{"figures": {"dql train main": 20.1, "dtql act 10 envs": 50.3, ...}, ...}`, keys
    "<algo> <measure> <label>" as in the benchmark's table; any other top-level keys describe the measurement.
    """
    try:
        figures = json.loads(Path(path).read_text())["figures"]
        items = {tuple(key.split(" ", 2)): float(value) for key, value in figures.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OffdiffError(f"--reference {path}: not a JSON file with a `figures` mapping of numbers ({exc})") from None
    unknown = sorted(" ".join(k) for k in items if k not in REFERENCES)
    bad = sorted(" ".join(k) for k, v in items.items() if not (math.isfinite(v) and v > 0))
    if unknown or bad:
        raise OffdiffError(f"--reference {path}: unknown figure(s) {unknown} (known: "
                           f"{', '.join(' '.join(k) for k in REFERENCES)}) or non-positive value(s) {bad}")
    return {key: Reference(value, REFERENCES[key].goal) for key, value in items.items()}


def reference_fields(value: float, ref: Reference | None) -> dict[str, float | None]:
    """A figure's reference, ratio to it and goal ratio (all None without a reference)."""
    return {"reference": ref.value if ref else None, "ratio_to_reference": value / ref.value if ref else None,
            "goal_ratio": ref.goal if ref else None}


def rows(results: list[Measured], cpu: bool,
         references: dict[tuple[str, str, str], Reference] | None = None) -> list[dict[str, Any]]:
    """Each figure with its reference (the issue's by default), ratio and goal (CPU only: the references are CPU
    figures) and, for a non-eager mode, its speed-up over eager."""
    references = REFERENCES if references is None else references
    eager = {(m.algo, m.measure, m.label, m.size.get("loops")): m.value for m in results if m.mode == "eager"}
    one_loop = {(m.algo, m.mode, m.label): m.value for m in results if m.size.get("loops") == 1}
    out = []
    for m in results:
        key = (m.algo, m.measure, m.label)
        ref = references.get(key) if cpu else None
        base = eager.get((*key, m.size.get("loops"))) if m.mode != "eager" else None
        row = {**dataclasses.asdict(m), **reference_fields(m.value, ref),
               "speedup_over_eager": m.value / base if base else None}
        if m.measure == "concurrent":
            single = one_loop.get((m.algo, m.mode, m.label))
            row["speedup_over_one_loop"] = m.value / single if single else None
        out.append(row)
    return out


def _num(value: float | None, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"


def table(payload: dict[str, Any]) -> str:
    """A Markdown table of every figure, under a line naming the machine."""
    m = payload["machine"]
    head = (f"offdiff speed benchmark: {m['device']}, {m['cpu_model']}, {m['cpu_cores']} cores, {m['threads']} torch "
            f"threads, torch {m['torch']}, load average {m['load_average_start']} -> {m['load_average_end']}")
    concurrent = any("speedup_over_one_loop" in r for r in payload["results"])
    cols = ["algo", "mode", "measure", "size", "median", "unit", "reference", "ratio", "goal", "vs eager",
            *(["vs 1 loop"] if concurrent else []), "peak MB", "warm-up s"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in payload["results"]:
        size = " ".join(f"{k} {v}" for k, v in r["size"].items())
        cells = [r["algo"], r["mode"], f"{r['measure']} {r['label']}", size, _num(r["value"]), r["unit"],
                 _num(r["reference"]), _num(r["ratio_to_reference"], "x"), _num(r["goal_ratio"], "x"),
                 _num(r["speedup_over_eager"], "x"),
                 *([_num(r.get("speedup_over_one_loop"), "x")] if concurrent else []),
                 f"{r['peak_memory_mb']:.0f}", f"{r['warmup_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(path: Path, payload: dict[str, Any]) -> list[Path]:
    """The JSON, and the table next to it as Markdown (same name, .md); both written atomically."""
    path = Path(path)
    markdown = path.with_suffix(".md")
    atomic_write_json(path, payload)
    atomic_write_bytes(markdown, table(payload).encode())
    return [path, markdown]
