"""The speed benchmark's output: ratios to the official implementations' throughput, the table and the JSON."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from offdiff.bench.speed import Measured
from offdiff.train.run_dir import atomic_write_bytes, atomic_write_json


@dataclasses.dataclass(frozen=True)
class Reference:
    """An official implementation's throughput on a 2-core CPU at the same settings, and the goal ratio."""

    value: float
    goal: float


# From the issue: the official releases on a 2-core CPU. Goal: Diffusion-QL and DTQL train at >= 1.5x and act at
# >= 3x over 10 envs; EDA no slower.
REFERENCES: dict[tuple[str, str, str], Reference] = {
    ("dql", "train", "main"): Reference(30.0, 1.5),
    ("dql", "act", "10 envs"): Reference(430.0, 3.0),
    ("dtql", "train", "pretrain"): Reference(64.0, 1.5),
    ("dtql", "train", "main"): Reference(38.0, 1.5),
    ("dtql", "act", "10 envs"): Reference(124.0, 3.0),
    ("eda", "train", "behavior"): Reference(3.4, 1.0),
    ("eda", "train", "critic"): Reference(160.0, 1.0),
    ("eda", "train", "align"): Reference(2.8, 1.0),
    ("eda", "act", "20 envs"): Reference(290.0, 1.0),
}


def rows(results: list[Measured], cpu: bool) -> list[dict[str, Any]]:
    """Each figure with its reference, ratio and goal (CPU only: the references are CPU figures) and, for a
    non-eager mode, its speed-up over eager."""
    eager = {(m.algo, m.measure, m.label): m.value for m in results if m.mode == "eager"}
    out = []
    for m in results:
        key = (m.algo, m.measure, m.label)
        ref = REFERENCES.get(key) if cpu else None
        base = eager.get(key) if m.mode != "eager" else None
        out.append({**dataclasses.asdict(m),
                    "reference": ref.value if ref else None,
                    "ratio_to_reference": m.value / ref.value if ref else None,
                    "goal_ratio": ref.goal if ref else None,
                    "speedup_over_eager": m.value / base if base else None})
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
    cols = ["algo", "mode", "measure", "size", "median", "unit", "reference", "ratio", "goal", "vs eager",
            "peak MB", "warm-up s"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in payload["results"]:
        size = " ".join(f"{k} {v}" for k, v in r["size"].items())
        cells = [r["algo"], r["mode"], f"{r['measure']} {r['label']}", size, _num(r["value"]), r["unit"],
                 _num(r["reference"]), _num(r["ratio_to_reference"], "x"), _num(r["goal_ratio"], "x"),
                 _num(r["speedup_over_eager"], "x"), f"{r['peak_memory_mb']:.0f}", f"{r['warmup_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(path: Path, payload: dict[str, Any]) -> list[Path]:
    """The JSON, and the table next to it as Markdown (same name, .md); both written atomically."""
    path = Path(path)
    markdown = path.with_suffix(".md")
    atomic_write_json(path, payload)
    atomic_write_bytes(markdown, table(payload).encode())
    return [path, markdown]
