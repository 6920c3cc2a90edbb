"""Same draws: offdiff's training steps and action choice against the release's, from the same weights, on the
same batches, with the same random numbers.

    python benchmarks/fidelity/same_draws.py --release dql --checkout ~/src/Diffusion-Policies-for-Offline-RL \\
        --dataset minari:local/hopper/medium-v0 --compare 1100 --out results/fidelity/same_draws.md

A score gap between offdiff and a release is bisected by swapping the release's components into offdiff one
at a time and retraining (README, "Every gap explained"). This checks every component of the update at once,
in minutes: both sides are built for the run (`run.py`'s options: dataset, seed, --steps, --set, --task),
the release's networks get offdiff's initial weights, and then, for `--compare` steps of each stage in turn,
offdiff samples a batch and takes a step while its random numbers are recorded, and the release takes its step
served those numbers in its own order (`fidelity.draws`, the adapter's `step_draws`). After every step each
network of the two sides is compared (max |Δ| over its parameters), and so are the losses both report
(relative to the loss, at least 1). Then both act on `--states` dataset states with the same draws.

The verdict: the same up to float rounding if no difference exceeds `--tolerance` (exit 0); otherwise the
first step and network that differ (exit 1). Some training amplifies rounding (Adam's first steps on near-zero
gradients; a policy chasing Q): `--control EPS` also trains a copy of offdiff whose initial weights are
perturbed by a relative EPS, with offdiff's own draws, and passes differences beyond the tolerance that are
at most `--within` times the copy's at the same step. A wrong coefficient, loss or schedule moves a weight by
about a learning rate at once, far above that. Equal steps rule out the critic, the policy, the losses, the
sampler, the optimizers, clipping, the targets and the EMA; what remains of a gap then lies in the random
streams themselves (equal in distribution) or in chance. Written for dql, dtql and eda (their adapters'
`twin_tensors`, `step_draws`, `act_draws`; EDA also serves the draws when a stage starts, `stage_draws`, and
its loader's per-epoch shuffle, `serve_batches`). A network the release builds when a stage starts joins
the comparison there.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `fidelity` is benchmarks/fidelity

from fidelity import stubs  # noqa: E402
from fidelity.adapter import Adapter, ReleaseData, seed_everything  # noqa: E402
from fidelity.adapters import ADAPTERS  # noqa: E402
from fidelity.draws import recording, serving  # noqa: E402
from fidelity.harness import adapter_for, add_run_arguments, check_checkout, plan_pair  # noqa: E402
from fidelity.release import imported, open_checkout  # noqa: E402
from fidelity.twins import Pairs  # noqa: E402
from offdiff.algorithm import Algorithm, EnvSpec  # noqa: E402
from offdiff.config import parse_assignments  # noqa: E402
from offdiff.data.pipeline import PreparedData, prepare  # noqa: E402
from offdiff.errors import OffdiffError  # noqa: E402
from offdiff.io import atomic_write_bytes  # noqa: E402
from offdiff.runtime import derive_seed, seed_run  # noqa: E402
from offdiff.train.runner import PlannedRun, TrainRequest  # noqa: E402

CPU = torch.device("cpu")


@dataclass
class Comparison:
    """After each compared step (labelled `stage step`): max |Δ| per network and the relative difference of each
    loss both sides report; |Δ action| per acted state. With a control, the same of offdiff against its
    perturbed copy (per network and loss, and per state)."""

    steps: list[str] = field(default_factory=list)
    networks: list[dict[str, float]] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)
    actions: list[float] = field(default_factory=list)
    scale: dict[str, float] = field(default_factory=dict)
    control: list[dict[str, float]] = field(default_factory=list)
    control_actions: list[float] = field(default_factory=list)
    parting: str | None = None  # where the networks first part beyond the tolerance, and each side's step there

    def _beyond(self, tolerance: float) -> list[tuple[str, float, float]]:
        """(what, difference, the control's) for every difference above `tolerance`, in order (control 0 without
        one)."""
        found = []
        for i, step in enumerate(self.steps):
            control = self.control[i] if self.control else {}
            for name, diff in {**self.networks[i], **self.losses[i]}.items():
                if not diff <= tolerance:
                    found.append((f"after {step}, {name} differs by {diff:.3g}", diff, control.get(name, 0.0)))
        for i, diff in enumerate(self.actions):
            if not diff <= tolerance:
                control = self.control_actions[i] if self.control_actions else 0.0
                found.append((f"acting on state {i + 1}, the actions differ by {diff:.3g}", diff, control))
        return found

    def verdict(self, tolerance: float, within: float) -> tuple[bool, str]:
        """(passes, in words): no difference above `tolerance`; or, with a control, none more than `within` times
        the control's for the same network, loss or state."""
        beyond = self._beyond(tolerance)
        if not beyond:
            return True, "the same up to float rounding"
        first = beyond[0][0] + f" (tolerance {tolerance:g})"
        if not self.control:
            return False, f"they differ: {first}"
        ratio = max(diff / control if control > 0 else math.inf for _, diff, control in beyond)
        if ratio > within:
            return False, f"they differ: {first}; up to {ratio:.3g}x the control's difference"
        return True, (f"the same up to float rounding, amplified by training: where they differ by more than "
                      f"{tolerance:g} ({first}), offdiff's own perturbed copy differs at least 1/{ratio:.1f} as much")


def relative(mine: float, other: float) -> float:
    """|mine − other| / max(1, |other|): a loss's difference, relative to its size once that exceeds 1."""
    return abs(mine - other) / max(1.0, abs(other))


@torch.no_grad()
def max_diff(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return max(float((r - m).abs().max()) for r, m in pairs)


def build_offdiff(mine: PlannedRun) -> Algorithm:
    """The plugin as the runner builds it: module initialisation and its generator from the seed (`seed_run`)."""
    spec = EnvSpec(mine.info.obs_dim, mine.info.act_dim, mine.info.dataset_id, mine.choice.task)
    return mine.cls(mine.config, spec, CPU, seed_run(mine.request.seed, CPU))


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


def perturbed_copy(mine: PlannedRun, epsilon: float, seed: int) -> Algorithm:
    """A second offdiff plugin for the run, every parameter scaled by (1 + ε·z), z ~ N(0, 1): the control."""
    copy = build_offdiff(mine)
    generator = torch.Generator().manual_seed(derive_seed(seed, "same-draws-control"))
    with torch.no_grad():
        for module in copy.modules().values():
            for p in module.parameters():
                p.mul_(1 + epsilon * torch.randn(p.shape, generator=generator))
    return copy


def stage_steps(spec: str, stages: list[str]) -> dict[str, int]:
    """`--compare`: N (every stage) or STAGE=N,... (the stages named; 0 for the others: trained, not compared)."""
    try:
        if "=" not in spec:
            counts = dict.fromkeys(stages, int(spec))
        else:
            counts = {stage: 0 for stage in stages}
            for item in spec.split(","):
                stage, _, count = item.partition("=")
                if stage not in counts:
                    raise OffdiffError(f"--compare: no stage {stage!r} (the stages: {', '.join(stages)})")
                counts[stage] = int(count)
    except ValueError:
        raise OffdiffError(f"--compare takes N or STAGE=N,..., got {spec!r}") from None
    if min(counts.values()) < 0 or max(counts.values()) < 1:
        raise OffdiffError("--compare: at least one step, and no negative counts")
    return counts


@torch.no_grad()
def parting(twins: dict[str, Pairs], before: dict[str, Pairs], diffs: dict[str, float], tolerance: float,
            step: str) -> str | None:
    """None while no network differs beyond `tolerance`; then, for the network that differs most, the element
    that differs most and the step each side took on it (equal and opposite steps on one weight are Adam's
    normalised step on a gradient so near zero that rounding decided its sign)."""
    name = max(diffs, key=diffs.__getitem__)
    if not diffs[name] > tolerance:
        return None
    index = max(range(len(twins[name])), key=lambda i: float((twins[name][i][0] - twins[name][i][1]).abs().max()))
    (release, mine), (release_was, mine_was) = twins[name][index], before[name][index]
    flat = int((release - mine).abs().argmax())
    theirs, ours = (float(t.reshape(-1)[flat]) for t in (release - release_was, mine - mine_was))
    return (f"after {step}, {name} (tensor {index}, shape {tuple(release.shape)}, element {flat}): the release "
            f"stepped it by {theirs:+.2e}, offdiff by {ours:+.2e}")


def compare(algo: Algorithm, data: PreparedData, adapter: Adapter, steps: dict[str, int], states: int, seed: int,
            control: Algorithm | None = None, tolerance: float = 1e-4) -> Comparison:
    """`steps[stage]` steps of each stage (fewer where a stage is shorter; a stage given 0 is trained for its full
    length without comparing), then acting on `states` dataset states. A `control` (offdiff's perturbed copy)
    takes every step with offdiff's own draws."""
    sampler = torch.Generator().manual_seed(derive_seed(seed, "sampler"))
    result = Comparison()
    before: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    adapter.serve_batches()
    for stage in algo.stages():
        with recording() as draws:
            algo.begin_stage(stage.name, data.buffer)
        with serving(adapter.stage_draws(stage.name, draws)):
            adapter.begin_stage(stage.name)
        if control is not None:
            with serving(draws):
                control.begin_stage(stage.name, data.buffer)
        twins = adapter.twin_tensors(algo)  # again: a release may build a network when a stage starts
        for name, pairs in twins.items():
            result.scale.setdefault(name, max_diff([(m, torch.zeros(())) for _, m in pairs]))
        mirrored = {} if control is None else {
            name: [(mine, copy) for (_, mine), (_, copy) in zip(twins[name], pairs, strict=True)]
            for name, pairs in adapter.twin_tensors(control).items()}
        compared = min(steps[stage.name], stage.steps)
        for step in range(stage.steps if compared == 0 else compared):
            if result.parting is None and compared:
                before = {name: [(r.detach().clone(), m.detach().clone()) for r, m in pairs]
                          for name, pairs in twins.items()}
            with recording() as draws:
                batch = data.buffer.sample(stage.batch_size, sampler)
                mine = algo.update(stage.name, batch, step)
            with serving(adapter.step_draws(stage.name, draws)):
                theirs = adapter.step(stage.name)
            copy: dict[str, Any] = {}
            if control is not None:
                with serving(draws):
                    copy = control.update(stage.name, data.buffer.sample(stage.batch_size, torch.Generator()), step)
            if compared == 0:
                continue
            result.steps.append(f"{stage.name} step {step + 1}")
            result.networks.append({name: max_diff(pairs) for name, pairs in twins.items()})
            if result.parting is None:
                result.parting = parting(twins, before, result.networks[-1], tolerance, result.steps[-1])
            result.losses.append({k: relative(float(mine[k]), v) for k, v in theirs.items() if k in mine})
            if control is not None:
                result.control.append({**{name: max_diff(pairs) for name, pairs in mirrored.items()},
                                       **{k: relative(float(mine[k]), float(copy[k])) for k in result.losses[-1]}})
    generator = torch.Generator().manual_seed(derive_seed(seed, "same-draws"))
    for row in torch.randint(len(data.buffer), (states,), generator=generator).tolist():
        obs = data.buffer.obs[row:row + 1]
        with recording() as draws:
            mine_action = algo.act(obs, generator)
        with serving(adapter.act_draws(draws)):
            their_action = torch.as_tensor(adapter.act(obs.numpy()), dtype=torch.float32).reshape(mine_action.shape)
        result.actions.append(float((mine_action - their_action).abs().max()))
        if control is not None:
            with serving(draws):
                result.control_actions.append(float((mine_action - control.act(obs, generator)).abs().max()))
    return result


def report(result: Comparison, command: str, release: str, commit: str | None, mine: PlannedRun,
           tolerance: float, within: float, epsilon: float | None) -> str:
    marks = [i for i, label in enumerate(result.steps) if int(label.rsplit(" ", 1)[1]) in (1, 10, 100, 1000, 10000)
             or i + 1 == len(result.steps) or result.steps[i + 1].split(" ")[0] != label.split(" ")[0]]
    names = list(dict.fromkeys(k for row in result.networks for k in row))  # a network may join at a stage's start
    losses = sorted({k for row in result.losses for k in row})
    _, verdict = result.verdict(tolerance, within)
    parted = [f"Where the networks first part beyond the tolerance: {result.parting}.", ""] if result.parting else []

    def cells(row: dict[str, float], control: dict[str, float] | None) -> str:
        def cell(k: str) -> str:
            if k not in row:
                return "—"
            return f"{row[k]:.1e}" + (f" ({control[k]:.1e})" if control and k in control else "")
        return " | ".join(cell(k) for k in names + losses)

    lines = [
        f"# Same draws: offdiff's `{mine.cls.name}` against the {release} release, step by step", "",
        f"`{command}`", "",
        f"Release checkout at `{commit or 'not a git checkout'}`; config hash `{mine.run_dir.path.parent.name}` "
        f"(task preset `{mine.choice.task}`), dataset `{mine.info.dataset_id}`, seed {mine.request.seed}.",
        "Both sides start from offdiff's initial weights, take the same batches and the same random numbers "
        "(benchmarks/fidelity/same_draws.py). Entries, after the step: the largest |Δ| over each network's "
        "parameters; for each loss both sides report, |Δ| / max(1, |loss|) (— where a stage has no such loss)."
        + (f" In brackets, the control: the same network's |Δ| between offdiff and its copy with every initial "
           f"weight scaled by (1 + {epsilon:g}·z), z ~ N(0, 1), taking the same steps with the same draws: how far "
           "training alone carries a difference of rounding size." if result.control else ""), "",
        "| after | " + " | ".join(names + losses) + " |",
        "|:---|" + "---:|" * (len(names) + len(losses)),
    ]
    for i in marks:
        row = {**result.networks[i], **result.losses[i]}
        lines.append(f"| {result.steps[i]} | {cells(row, result.control[i] if result.control else None)} |")
    top = {k: max(r[k] for r in result.networks if k in r) for k in names}
    top.update({k: max(r[k] for r in result.losses if k in r) for k in losses})
    top_control = {k: max(r[k] for r in result.control if k in r) for k in names} if result.control else None
    lines.append(f"| max over all | {cells(top, top_control)} |")
    lines += ["", "Largest |parameter| per network at the start, for scale: " + ", ".join(
        f"{k} {v:.2f}" for k, v in result.scale.items()) + ".", "",
        f"Acting on {len(result.actions)} dataset states with the same draws: largest |Δ action| "
        f"{max(result.actions):.1e}" + (f" ({max(result.control_actions):.1e})" if result.control_actions else "")
        + ".", "", *parted,
        f"**Verdict:** {verdict}" + (f" (a difference passes when at most {within:g}x the control's)"
                                     if result.control else "") + ".", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="same_draws.py", description=__doc__.split("\n\n")[0])
    add_run_arguments(p)  # the run's definition, as run.py takes it (--steps also sets e.g. the LR schedule)
    p.add_argument("--compare", default="1100", help="steps compared: N in every stage (default 1100: past "
                   "Diffusion-QL's EMA start), or STAGE=N,... (a stage not named is trained in full, not compared)")
    p.add_argument("--states", type=int, default=20, help="dataset states to act on (default 20)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest |Δ| called float rounding (default 1e-4)")
    p.add_argument("--control", type=float, metavar="EPS", help="also train offdiff's copy with every initial weight "
                   "scaled by (1 + EPS·z), on the same draws: differences beyond --tolerance then pass when they are "
                   "at most --within times the copy's (training that amplifies rounding), e.g. 1e-7")
    p.add_argument("--within", type=float, default=10.0, help="see --control (default 10)")
    p.add_argument("--out", type=Path, help="write the report (Markdown) here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.states < 1:
            raise OffdiffError("--states must be at least 1")
        adapter_cls = adapter_for(args.release)
        if not adapter_cls.same_draws:
            written = ", ".join(sorted(name for name, a in ADAPTERS.items() if a.same_draws))
            raise OffdiffError(f"the same-draws check is not written for the {args.release} release (only for "
                               f"{written})")
        request = TrainRequest(algo=adapter_cls.algo, source=args.dataset, seed=args.seed, eval_env=args.eval_env,
                               overrides=parse_assignments(args.set), steps=args.steps, device="cpu", compile=False,
                               task=args.task, ref_scores=args.ref_scores)
        mine, _ = plan_pair(args.release, request)
        adapter_cls.check_config(mine.config, mine.choice.task)
        adapter_cls.check_same_draws(mine.config)
        checkout = open_checkout(args.checkout, adapter_cls.commit, args.any_commit)
        c = mine.config
        data = prepare(mine.dataset, obs_transform=c.obs_transform, reward_transform=c.reward_transform, device=CPU)
        algo = build_offdiff(mine)
        control = None if args.control is None else perturbed_copy(mine, args.control, args.seed)
        with imported(checkout):
            check_checkout(adapter_cls, checkout)
            adapter = build_release(adapter_cls, algo, request)
            steps = stage_steps(args.compare, [stage.name for stage in algo.stages()])
            result = compare(algo, data, adapter, steps, args.states, args.seed, control, args.tolerance)
    except OffdiffError as exc:
        print(f"offdiff: error: {exc}", file=sys.stderr)
        return 2
    command = "python benchmarks/fidelity/same_draws.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(result, command, args.release, checkout.commit, mine, args.tolerance, args.within, args.control)
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    passes, verdict = result.verdict(args.tolerance, args.within)
    print(f"[same-draws] {len(result.steps)} steps, {args.states} states: {verdict}")
    return 0 if passes else 1


if __name__ == "__main__":
    sys.exit(main())
