"""The first episodes of a data source as a small D4RL-style file, for checks that label every state.

    python benchmarks/fidelity/head.py minari:local/hopper/medium-v0 --episodes 3 --out /tmp/hopper-medium-3.hdf5

EDA's release samples support actions for every state of its data, so `same_draws.py --release eda` runs on
CPU in minutes only on a few hundred states. This writes the first `--episodes` whole episodes (an episode ends
at a terminal or a timeout) of any offdiff source, raw as the source holds them, with the source's task and
reference scores as attributes; read it back as `hdf5:<path>` with the source's `--eval-env`.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `fidelity` is benchmarks/fidelity

from offdiff.data.sources import resolve_dataset  # noqa: E402
from offdiff.errors import OffdiffError  # noqa: E402
from offdiff.io import atomic_write_bytes  # noqa: E402


def write_head(source: str, episodes: int, out: Path) -> tuple[int, str]:
    """Write the first `episodes` episodes of `source` to `out`; (transitions written, the source's eval env)."""
    resolved = resolve_dataset(source)
    transitions = resolved.data.load()
    ends = np.flatnonzero(transitions.terminals | transitions.timeouts)
    if episodes < 1 or len(ends) < episodes:
        raise OffdiffError(f"--episodes {episodes}: {source} has {len(ends)} whole episodes")
    rows = int(ends[episodes - 1]) + 1
    image = io.BytesIO()  # the file is built in memory, then written whole: a failure leaves no half-written file
    with h5py.File(image, "w") as f:
        for name, values in transitions.arrays().items():
            f[name] = values[:rows]
        f.attrs.update({"task": resolved.info.task, "ref_min_score": resolved.ref.min,
                        "ref_max_score": resolved.ref.max})
    atomic_write_bytes(out, image.getvalue())
    return rows, resolved.info.eval_env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="head.py", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="any offdiff data source, e.g. minari:local/hopper/medium-v0")
    p.add_argument("--episodes", type=int, default=3, help="whole episodes to keep (default 3)")
    p.add_argument("--out", type=Path, required=True, help="the file to write (D4RL's HDF5 layout)")
    args = p.parse_args(argv)
    try:
        rows, eval_env = write_head(args.source, args.episodes, args.out)
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2
    print(f"[head] {rows} transitions ({args.episodes} episodes) -> {args.out}; read it as hdf5:{args.out} "
          f"--eval-env {eval_env}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
