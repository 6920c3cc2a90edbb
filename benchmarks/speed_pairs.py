"""Paired rounds of one algorithm against a reference implementation timed on the same CPU.

Each pair runs the reference command and `offdiff bench speed` back to back, and the pairs alternate which
goes first, so the machine's drift over minutes falls on both sides of each ratio. Every pair's offdiff JSON
carries that pair's reference figures, so `speed_rounds.py` collates the pairs like rounds:

    python benchmarks/speed_pairs.py dql 6 speed-pairs \
        --reference-cmd "python official_bench.py --threads 2 --only dql --out" -- --modes compile --threads 2
    python benchmarks/speed_rounds.py speed-pairs/dql-offdiff-*.json

The reference command gets, as its last argument, the JSON file to write, in `offdiff bench speed
--reference`'s format (offdiff/bench/report.py). Arguments after `--` go to `offdiff bench speed`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from offdiff.bench.report import load_references, reference_fields, write


def with_reference(offdiff_json: Path, reference_json: Path) -> None:
    """Rewrite a CPU benchmark JSON (and its table) with the figures of `reference_json` as its references."""
    payload = json.loads(offdiff_json.read_text())
    device = payload["machine"]["device"]
    if not device.startswith("cpu"):
        raise SystemExit(f"{offdiff_json}: the reference figures are CPU figures; it ran on {device}")
    references = load_references(reference_json)
    for row in payload["results"]:
        row.update(reference_fields(row["value"], references.get((row["algo"], row["measure"], row["label"]))))
    payload["reference"] = str(reference_json)
    write(offdiff_json, payload)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="arguments after -- go to `offdiff bench speed`")
    p.add_argument("algo")
    p.add_argument("pairs", type=int)
    p.add_argument("out", type=Path)
    p.add_argument("--reference-cmd", required=True, help="command that times the reference; gets the JSON path")
    split = argv.index("--") if "--" in argv else len(argv)
    args, bench_args = p.parse_args(argv[:split]), argv[split + 1:]  # after `--`: `offdiff bench speed`'s
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(1, args.pairs + 1):
        ref, mine = args.out / f"{args.algo}-official-{i}.json", args.out / f"{args.algo}-offdiff-{i}.json"
        bench = [sys.executable, "-m", "offdiff.cli", "bench", "speed", "--algos", args.algo, *bench_args]
        steps = [shlex.split(args.reference_cmd) + [str(ref)], bench + ["--out", str(mine)]]
        for command in steps if i % 2 else steps[::-1]:
            subprocess.run(command, check=True)
        with_reference(mine, ref)
        print(f"[pairs] {args.algo}: pair {i} of {args.pairs} done", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
