"""Where does EDA's alignment go wrong? Restart the align stage of a finished EDA run and watch π_θ's samples.

    python benchmarks/eda_alignment_probe.py RUN_DIR [--steps 10,25,50,100] [--perturb 5e-4,2.5e-3]
        [--set q_scale=0.05] [--out FILE]

From the run's weights it takes the trained behaviour model μ_φ and critic, as a cached critic stage hands them
on, and starts the alignment again with the plugin's own `begin_stage` and `update`: θ₀ = φ, the run's config
(with `--set` overrides, e.g. the labels' temperature `q_scale` or `beta`), loss and optimizer, and a candidate
set drawn the way the run draws one, from `--seed` (not the run's own draw). After each listed number of steps
it samples π_θ once on random dataset states with the acting sampler and reports:
- the align loss;
- the share of sampled action coordinates outside the [-1, 1] box (acting clips them);
- the largest |a|;
- the critic's Q of the clipped samples;
- their squared distance to the dataset's actions, summed over action dimensions.

The control moves every weight of θ₀ = φ by a random ±δ (`--perturb`) and samples the same way. That
separates "any small undirected step breaks the sampler" from "the alignment's step does".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from offdiff.config import apply_overrides, parse_assignments
from offdiff.data.pipeline import PreparedData, prepare
from offdiff.errors import OffdiffError
from offdiff.eval.load import load_run
from offdiff.io import atomic_write_bytes
from offdiff.registry import get_algorithm
from offdiff.runtime import algorithm_generator, derive_seed
from offdiff_eda.eda import BEHAVIOR_KEYS, CRITIC_KEYS

COLUMNS = ("policy", "align loss", "outside [-1, 1]", "max abs a", "Q (clipped)", "sq. distance to data action")


def _numbers(text: str, kind: type, low: float) -> list:
    try:
        values = [kind(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(v < low for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers >= {low:g}, got {text!r}")
    return values


def _positive(text: str) -> int:
    value = _numbers(text, int, 1)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"expected one integer >= 1, got {text!r}")
    return value[0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a finished (or aligning) EDA run folder")
    p.add_argument("--steps", type=lambda s: _numbers(s, int, 1), default=[10, 25, 50, 100],
                   help="align steps after which to sample π_θ (default: 10,25,50,100)")
    p.add_argument("--perturb", type=lambda s: _numbers(s, float, 0), default=[5e-4, 2.5e-3],
                   help="sizes δ of the random ±δ control (default: 5e-4,2.5e-3; empty: none)")
    p.add_argument("--states", type=_positive, default=500, help="random dataset states sampled (default: 500)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of the alignment (e.g. q_scale, beta, align_lr)")
    p.add_argument("--seed", type=int, default=0, help="draws the candidate set, the states and the controls")
    p.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    return p


class Probe:
    """A fresh EDA holding the run's behaviour model and critic, its alignment restarted from θ₀ = φ."""

    def __init__(self, run_dir: Path, seed: int, states: int, overrides: dict[str, Any]):
        trained = load_run(run_dir, device="cpu")
        if trained.manifest.algorithm != "eda":
            raise OffdiffError(f"{run_dir} is a {trained.manifest.algorithm} run; the probe restarts EDA's alignment")
        fixed = sorted(set(overrides) & {*BEHAVIOR_KEYS, *CRITIC_KEYS, "obs_transform", "reward_transform"})
        if fixed:
            raise OffdiffError(f"--set {', '.join(fixed)}: the behaviour model and critic come from the run as "
                               "trained; set only keys of the alignment (e.g. q_scale, beta, align_lr)")
        config, dataset = apply_overrides(trained.algorithm.config, overrides), trained.manifest.dataset
        ref = dataset["ref_scores"]
        self.data: PreparedData = prepare(dataset["source"], eval_env=dataset["eval_env"],
                                          ref_scores=f"{ref['min']},{ref['max']}", device="cpu",
                                          obs_transform=config.obs_transform, reward_transform=config.reward_transform)
        self.generator = torch.Generator().manual_seed(derive_seed(seed, "probe"))
        self.algo = get_algorithm("eda")(config, trained.algorithm.spec, torch.device("cpu"),
                                         algorithm_generator(seed, "cpu"))
        artifact = {**trained.algorithm.stage_artifact("critic"), "generator": algorithm_generator(seed, "cpu")
                    .get_state()}  # the generator the alignment set is drawn from: --seed's, not the run's
        self.algo.load_stage_artifact("critic", artifact)
        rows = torch.randperm(len(self.data.buffer), generator=self.generator)[:states]
        held_out = self.data.buffer.gather(rows)
        self.obs, self.actions = held_out.obs, held_out.actions
        self.behavior_state = {k: v.clone() for k, v in self.algo.modules()["behavior"].state_dict().items()}

    def sample_stats(self, label: str, loss: float | None) -> dict[str, str]:
        c = self.algo.config
        policy = self.algo.modules()["policy"]
        policy.eval()
        with torch.no_grad():
            a = policy.sample(self.obs, torch.Generator().manual_seed(7), nfe=c.solver_nfe, order=c.solver_order)
            clipped = a.clamp(-1.0, 1.0)
            q = self.algo.critic_q(self.obs, clipped)
        values = ("—" if loss is None else f"{loss:.3f}", f"{(a.abs() > 1).float().mean():.1%}",
                  f"{a.abs().max():.2f}", f"{q.mean():.1f}", f"{(clipped - self.actions).square().sum(-1).mean():.3f}")
        return dict(zip(COLUMNS, (label, *values), strict=True))

    def align(self, checkpoints: list[int]) -> list[dict[str, str]]:
        algo, c = self.algo, self.algo.config
        algo.begin_stage("align", self.data.buffer)  # θ₀ = φ; the candidate set, labelled by the critic
        rows, loss = [self.sample_stats("θ₀ = φ (behaviour)", None)], None
        for step in range(max(checkpoints, default=0)):
            batch = self.data.buffer.sample(c.align_batch_size, self.generator)
            loss = float(algo.update("align", batch, step)["align_loss"])
            if step + 1 in checkpoints:
                rows.append(self.sample_stats(f"aligned, {step + 1} steps", loss))
                print(f"[probe] {step + 1} align steps done", file=sys.stderr, flush=True)
        return rows

    def perturbed(self, sizes: list[float]) -> list[dict[str, str]]:
        """θ = φ + δ·sign(u), u ~ N(0, I) on every trained weight: a random step of Adam's size."""
        policy, rows = self.algo.modules()["policy"], []
        trained = dict(policy.named_parameters())  # buffers such as the fixed Fourier features stay as they are
        for delta in sizes:
            state = {k: v + delta * torch.randn(v.shape, generator=self.generator).sign() if k in trained else v
                     for k, v in self.behavior_state.items()}
            policy.load_state_dict(state)
            rows.append(self.sample_stats(f"φ ± {delta:g} at random", None))
        return rows


def markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join([*lines, *("| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    try:
        probe = Probe(args.run_dir, args.seed, args.states, parse_assignments(args.set))
        table = markdown(probe.align(sorted(set(args.steps))) + probe.perturbed(args.perturb))
        print(table, end="")
        if args.out:
            atomic_write_bytes(args.out, table.encode())
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
