"""Same draws: offdiff's training steps and action choice against the release's, from the same weights, on the
same batches, with the same random numbers.

    python benchmarks/fidelity/same_draws.py --release dql --checkout ~/src/Diffusion-Policies-for-Offline-RL \\
        --dataset minari:local/hopper/medium-v0 --compare 1100 --out results/fidelity/same_draws.md

A score gap between offdiff and a release is bisected by swapping the release's components into offdiff one
at a time and retraining (README, "Every gap explained"). This checks every component of the update at once,
in seconds: both sides are built for the run (`run.py`'s options: dataset, seed, --steps, --set, --task),
the release's networks get offdiff's initial weights, and then, `--compare` times, offdiff samples a batch
and takes a step while its random numbers are recorded, and the release takes its step served those numbers
in its own order (`fidelity.draws`, the adapter's `step_draws`). After every step each network of the two
sides is compared (max |Δ| over its parameters), and so are the losses both report. Then both act on
`--states` dataset states with the same draws, and their actions are compared.

The verdict: the same, up to float rounding, if no difference exceeds `--tolerance` (exit 0); otherwise the
first step and network that differ (exit 1). Equal steps rule out the critic, the policy, the losses, the
sampler, the optimizers, clipping, the targets and the EMA; what remains of a gap then lies in the random
streams themselves (equal in distribution) or in chance. Written so far for dql (adapters/dql.py).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `fidelity` is benchmarks/fidelity

from fidelity import stubs  # noqa: E402
from fidelity.adapter import Adapter, ReleaseData, seed_everything  # noqa: E402
from fidelity.draws import recording, serving  # noqa: E402
from fidelity.harness import adapter_for, add_run_arguments, plan_pair  # noqa: E402
from fidelity.release import imported, open_checkout  # noqa: E402
from offdiff.algorithm import Algorithm, EnvSpec  # noqa: E402
from offdiff.config import parse_assignments  # noqa: E402
from offdiff.data.pipeline import PreparedData, prepare  # noqa: E402
from offdiff.errors import OffdiffError  # noqa: E402
from offdiff.io import atomic_write_bytes  # noqa: E402
from offdiff.runtime import derive_seed  # noqa: E402
from offdiff.train.runner import PlannedRun, TrainRequest  # noqa: E402

CPU = torch.device("cpu")


@dataclass
class Comparison:
    """Max |Δ| per network and per shared loss after each step, and per acted state."""

    networks: list[dict[str, float]] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)
    actions: list[float] = field(default_factory=list)
    scale: dict[str, float] = field(default_factory=dict)

    def worst(self, tolerance: float) -> str | None:
        """The first difference above `tolerance`, in words; None if there is none."""
        for step, (nets, losses) in enumerate(zip(self.networks, self.losses, strict=True)):
            for name, diff in {**nets, **losses}.items():
                if not diff <= tolerance:
                    return f"after step {step + 1}, {name} differs by {diff:.3g} (tolerance {tolerance:g})"
        for i, diff in enumerate(self.actions):
            if not diff <= tolerance:
                return f"acting on state {i + 1}, the actions differ by {diff:.3g} (tolerance {tolerance:g})"
        return None


@torch.no_grad()
def max_diff(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return max(float((r - m).abs().max()) for r, m in pairs)


def build_offdiff(mine: PlannedRun) -> tuple[Algorithm, PreparedData]:
    """The plugin as the runner builds it: module initialisation from the seed, its generator from the seed."""
    c, seed = mine.config, mine.request.seed
    data = prepare(mine.dataset, obs_transform=c.obs_transform, reward_transform=c.reward_transform, device=CPU)
    torch.manual_seed(seed)
    spec = EnvSpec(mine.info.obs_dim, mine.info.act_dim, mine.info.dataset_id, mine.choice.task)
    return mine.cls(c, spec, CPU, torch.Generator().manual_seed(seed)), data


def build_release(adapter_cls: type[Adapter], algo: Algorithm, request: TrainRequest) -> Adapter:
    """The release's agent as the harness builds it (inside `imported`), then given offdiff's weights."""
    data = ReleaseData.load(request.source, request.eval_env, request.ref_scores)
    adapter = adapter_cls(algo.config, algo.spec, data, CPU, request.seed)
    stubs.feed(data.arrays)
    seed_everything(request.seed)
    adapter.build()
    with torch.no_grad():
        for pairs in adapter.twin_tensors(algo).values():
            for release, mine in pairs:
                release.copy_(mine)
    return adapter


def compare(algo: Algorithm, data: PreparedData, adapter: Adapter, steps: int, states: int, seed: int) -> Comparison:
    stage = algo.stages()[0]
    if steps > stage.steps:
        raise OffdiffError(f"--compare {steps} is more than the {stage.name} stage's {stage.steps} steps")
    algo.begin_stage(stage.name, data.buffer)
    adapter.begin_stage(stage.name)
    sampler = torch.Generator().manual_seed(derive_seed(seed, "sampler"))
    twins = adapter.twin_tensors(algo)
    scale = {name: max_diff([(m, torch.zeros(())) for _, m in pairs]) for name, pairs in twins.items()}
    result = Comparison(scale=scale)
    for step in range(steps):
        with recording() as draws:
            batch = data.buffer.sample(stage.batch_size, sampler)
            mine = algo.update(stage.name, batch, step)
        with serving(adapter.step_draws(draws)):
            theirs = adapter.step(stage.name)
        result.networks.append({name: max_diff(pairs) for name, pairs in twins.items()})
        result.losses.append({k: abs(float(mine[k]) - v) for k, v in theirs.items() if k in mine})
    generator = torch.Generator().manual_seed(derive_seed(seed, "same-draws"))
    for row in torch.randint(len(data.buffer), (states,), generator=generator).tolist():
        obs = data.buffer.obs[row:row + 1]
        with recording() as draws:
            mine_action = algo.act(obs, generator)
        with serving(adapter.act_draws(draws)):
            their_action = torch.as_tensor(adapter.act(obs.numpy()), dtype=torch.float32).reshape(mine_action.shape)
        result.actions.append(float((mine_action - their_action).abs().max()))
    return result


def report(result: Comparison, command: str, release: str, commit: str | None, mine: PlannedRun,
           tolerance: float) -> str:
    steps = len(result.networks)
    marks = sorted({s for s in (1, 10, 100, 1000, 10000) if s <= steps} | {steps})
    names = list(result.networks[0])
    losses = sorted(result.losses[0])
    worst = result.worst(tolerance)
    lines = [
        f"# Same draws: offdiff's `{mine.cls.name}` against the {release} release, step by step", "",
        f"`{command}`", "",
        f"Release checkout at `{commit or 'not a git checkout'}`; config hash `{mine.run_dir.path.parent.name}` "
        f"(task preset `{mine.choice.task}`), dataset `{mine.info.dataset_id}`, seed {mine.request.seed}.",
        "Both sides start from offdiff's initial weights, take the same batches and the same random numbers "
        "(benchmarks/fidelity/same_draws.py). Entries: the largest |Δ| over each network's parameters, and "
        "the absolute difference of each loss both sides report, after the step.", "",
        "| after step | " + " | ".join(names + losses) + " |",
        "|---:|" + "---:|" * (len(names) + len(losses)),
    ]
    for s in marks:
        row = {**result.networks[s - 1], **result.losses[s - 1]}
        lines.append(f"| {s} | " + " | ".join(f"{row[k]:.1e}" for k in names + losses) + " |")
    top = {**{k: max(r[k] for r in result.networks) for k in names}, **{k: max(r[k] for r in result.losses)
                                                                         for k in losses}}
    lines.append("| max over all | " + " | ".join(f"{top[k]:.1e}" for k in names + losses) + " |")
    lines += ["", "Largest |parameter| per network, for scale: " + ", ".join(
        f"{k} {v:.2f}" for k, v in result.scale.items()) + ".", "",
        f"Acting on {len(result.actions)} dataset states with the same draws: largest |Δ action| "
        f"{max(result.actions):.1e}.", "",
        f"**Verdict:** {'the same up to float rounding' if worst is None else 'they differ: ' + worst} "
        f"(tolerance {tolerance:g}).", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="same_draws.py", description=__doc__.split("\n\n")[0])
    add_run_arguments(p)  # the run's definition, as run.py takes it (--steps also sets e.g. the LR schedule)
    p.add_argument("--compare", type=int, default=1100, help="steps to compare (default 1100: past the EMA's start)")
    p.add_argument("--states", type=int, default=20, help="dataset states to act on (default 20)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest |Δ| called float rounding (default 1e-4)")
    p.add_argument("--out", type=Path, help="write the report (Markdown) here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.compare < 1 or args.states < 1:
            raise OffdiffError("--compare and --states must be at least 1")
        adapter_cls = adapter_for(args.release)
        request = TrainRequest(algo=adapter_cls.algo, source=args.dataset, seed=args.seed, eval_env=args.eval_env,
                               overrides=parse_assignments(args.set), steps=args.steps, device="cpu", compile=False,
                               task=args.task, ref_scores=args.ref_scores)
        mine, _ = plan_pair(args.release, request)
        adapter_cls.check_config(mine.config, mine.choice.task)
        checkout = open_checkout(args.checkout, adapter_cls.commit, args.any_commit)
        algo, data = build_offdiff(mine)
        with imported(checkout):
            adapter = build_release(adapter_cls, algo, request)
            result = compare(algo, data, adapter, args.compare, args.states, args.seed)
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2
    command = "python benchmarks/fidelity/same_draws.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(result, command, args.release, checkout.commit, mine, args.tolerance)
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    worst = result.worst(args.tolerance)
    print(f"[same-draws] {args.compare} steps, {args.states} states: "
          + ("the same up to float rounding" if worst is None else f"they differ: {worst}"))
    return 0 if worst is None else 1


if __name__ == "__main__":
    sys.exit(main())
