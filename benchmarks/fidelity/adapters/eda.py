"""EDA (thu-ml/Efficient-Diffusion-Alignment @ 2f96929, with its documented one-line fix): `BDiffusion`.

Drives the release's three scripts as one run, in their order and with their seeding (each script seeds torch
and numpy from the seed and builds its own `D4RL_dataset`): `train_behavior.py` (BDiffusion_Behavior),
`train_critic.py` (IQL_policy), `finetune_policy.py` (EDA_policy, loaded from the behavior model and the
critic just trained, with its support actions sampled as that script samples them). Acting is
`select_actions_sfbc(base="policy")`, as the script evaluates, clipped to the action box as the simulator
clamps it (offdiff's EDA clips too).

The release hard-codes "cuda" (`.to("cuda")` in BDiffusion.py and dataset.py). On another device, while the
release runs (`build`, `begin_stage`, `step`, `act`), `Tensor.to` and `Module.to` take the string or device
"cuda" as the adapter's device (`cuda_as`); nothing else of the release changes, and on a GPU nothing is
patched. The behavior model and the critic are built in `build`, each after its script's seeding, and each
stage's start restores the RNG state its script had after building (so its first draws are the script's).

The fix (README): in `EDA_policy.update_policy`, the policy's energy must be computed outside the `no_grad`
block that computes the behavior baseline; as released, backward fails.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from fidelity import stubs, twins
from fidelity.adapter import Adapter, seed_everything
from fidelity.draws import Draw
from fidelity.release import Checkout
from fidelity.twins import Pairs
from offdiff.algorithm import Algorithm
from offdiff.errors import OffdiffError

CANDIDATE_CHUNK = 256  # finetune_policy.py samples the support actions 256 states at a time
FOURIER_WEIGHTS = 16  # model.py: GaussianFourierProjection(embed_dim=32) draws W ~ N(0, 1) of 16 when built
LOADER_FIELDS = ("states", "actions", "rewards", "next_states", "is_finished", "fake_actions")  # D4RL_dataset's
Method = TypeVar("Method", bound=Callable[..., Any])


def _fix_applied(source: str) -> bool:
    """Whether `xt_model_energy` is assigned outside every `with torch.no_grad():` block of `update_policy`."""
    blocks = [n for n in ast.walk(ast.parse(textwrap.dedent(source)))
              if isinstance(n, ast.With) and "no_grad" in ast.unparse(n.items[0].context_expr)]
    return not any(isinstance(n, ast.Name) and n.id == "xt_model_energy" and isinstance(n.ctx, ast.Store)
                   for block in blocks for n in ast.walk(block))


def _is_cuda(device: Any) -> bool:
    return (isinstance(device, str) and device.split(":")[0] == "cuda") or (
        isinstance(device, torch.device) and device.type == "cuda")


@contextlib.contextmanager
def cuda_as(device: torch.device) -> Iterator[None]:
    """Within the block, `Tensor.to` and `Module.to` send a target of "cuda" (positional or `device=`) to
    `device` instead; nothing is patched when `device` is a GPU."""
    if device.type == "cuda":
        yield
        return
    tensor_to, module_to = torch.Tensor.to, torch.nn.Module.to

    def redirected(original: Callable[..., Any]) -> Callable[..., Any]:
        def to(self: Any, *args: Any, **kwargs: Any) -> Any:
            if args and _is_cuda(args[0]):
                args = (device, *args[1:])
            if _is_cuda(kwargs.get("device")):
                kwargs["device"] = device
            return original(self, *args, **kwargs)
        return to

    torch.Tensor.to, torch.nn.Module.to = redirected(tensor_to), redirected(module_to)  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.to, torch.nn.Module.to = tensor_to, module_to  # type: ignore[method-assign]


def on_device(method: Method) -> Method:
    """The adapter method runs the release under `cuda_as(self.device)`."""
    @functools.wraps(method)
    def run(self: EDAAdapter, *args: Any, **kwargs: Any) -> Any:
        with cuda_as(self.device):
            return method(self, *args, **kwargs)
    return run  # type: ignore[return-value]


def score_net_pairs(release: torch.nn.Module, mine: torch.nn.Module, where: str) -> Pairs:
    """model.py's `ScoreNet_IDQL` against offdiff's `EnergyMLP`: the Fourier weights, the time path
    (cond_model, dense1), the action (dense2) and state (dense3) inputs, and `MLPResNet` (fc, each block's
    layer_norm, fc1, fc2, then out_fc) against `ResidualMLP`. A block's `residual` Linear is left out: the
    release builds it but never uses it (its input and output widths agree)."""
    main, trunk = release.main, mine.trunk
    blocks = list(trunk)[1:-2]
    if len(main.blocks) != len(blocks):
        raise OffdiffError(f"same draws: {where}: {len(main.blocks)} residual blocks in the release, {len(blocks)} "
                           "in offdiff")
    layers = [(release.cond_model, mine.time[1]), (release.dense1, mine.time[3]), (release.dense2, mine.action),
              (release.dense3, mine.state), (main.fc, trunk[0])]
    for theirs, ours in zip(main.blocks, blocks, strict=True):
        layers += [(theirs.layer_norm, ours.branch[1]), (theirs.fc1, ours.branch[2]), (theirs.fc2, ours.branch[4])]
    layers.append((main.out_fc, trunk[-1]))
    fourier = twins.checked([(release.embed[0].W, mine.time[0].W)], f"{where} Fourier weights")
    return fourier + [pair for r, m in layers for pair in twins.plain(r, m, where)]


def q_pairs(release: torch.nn.Module, ensemble: torch.nn.Module, obs_dim: int, where: str) -> Pairs:
    """model.py's `TwinQ` (q1, q2 on [action, state]) against offdiff's two-head ensemble on [state, action]:
    the first layer's weight pairs by column blocks (views, so the pairs follow training)."""
    pairs: Pairs = []
    for head, q in enumerate((release.q1, release.q2)):
        (theirs, ours), *rest = twins.ensemble_head(q, ensemble, head, f"{where} Q{head + 1}")
        act_dim = theirs.shape[1] - obs_dim
        pairs += [(theirs[:, :act_dim], ours[:, obs_dim:]), (theirs[:, act_dim:], ours[:, :obs_dim]), *rest]
    return pairs


class EDAAdapter(Adapter):
    release = "eda"
    algo = "eda"
    commit = "2f96929"
    same_draws = True
    repository = "https://github.com/thu-ml/Efficient-Diffusion-Alignment"
    metric_names = {"v_loss": "value_loss"}  # its `q` is the target's min Q on data, offdiff's q_data the online mean
    diagnostic_policies = ("behavior",)

    @staticmethod
    def env_name(task: str) -> str:
        """The D4RL-style name the release reads its switches from ("v2": the state-conditioned model, "maze",
        "antmaze", "kitchen": expectile, reward processing and IQL temperature)."""
        return f"{task}-v2"

    @classmethod
    def release_values(cls, task: str) -> dict[str, Any]:
        name = cls.env_name(task)
        reward = "iql_antmaze" if "antmaze" in name else "none" if "kitchen" in name else "iql_locomotion"
        return {**super().release_values(task), "reward_transform": reward, "expectile": 0.9 if "maze" in name else 0.7,
                "behavior_lr": 3e-4, "critic_lr": 3e-4, "align_lr": 5e-5, "hidden": 256, "time_dim": 32,
                "fourier_scale": 30.0, "state_input": True, "vp_beta_0": 0.1, "vp_beta_1": 20.0, "t_eps": 1e-3,
                "critic_hidden": 256, "discount": 0.99, "critic_tau": 0.005, "label_fraction": 1.0,
                "candidates": "behavior", "solver_nfe": 15, "solver_order": 2}

    @classmethod
    def check_checkout(cls, checkout: Checkout) -> None:
        import BDiffusion

        if not _fix_applied(inspect.getsource(BDiffusion.EDA_policy.update_policy)):
            raise OffdiffError(f"{checkout.path}/BDiffusion.py lacks EDA's documented one-line fix (the policy "
                               "energy inside no_grad); apply it as benchmarks/fidelity/README.md shows")

    @classmethod
    def check_same_draws(cls, config: Any) -> None:
        if config.dropout > 0:
            raise OffdiffError(f"same draws: dropout={config.dropout:g} draws its masks inside torch's C++ kernel, "
                               "which cannot be served to the release; run the check with --set dropout=0")

    @on_device
    def build(self) -> None:
        import BDiffusion
        import utils

        c, argv = self.config, sys.argv
        sys.argv = argv[:1]  # get_args() parses the process's command line: give it none, for its defaults
        try:
            args = utils.get_args()
        finally:
            sys.argv = argv
        for key, value in {"env": self.env_name(self.spec.task), "seed": self.seed, "device": str(self.device),
                           "beta": c.beta, "alpha": c.q_scale, "M": c.num_candidates,
                           "policy_batchsize": c.align_batch_size, "actor_blocks": c.num_blocks,
                           "dropout_rate": c.dropout}.items():
            setattr(args, key, value)
        args.run = stubs.modules()["wandb"].init()
        args.marginal_prob_std_fn = functools.partial(utils.marginal_prob_std, device=args.device, beta_1=20.0)
        self.args, self.folder = args, tempfile.TemporaryDirectory(prefix="eda-official-")
        self.dims = (self.spec.obs_dim + self.spec.act_dim, self.spec.act_dim)
        self.rng: dict[str, tuple[torch.Tensor, Any]] = {}
        self.batches_served = False
        seed_everything(self.seed)  # train_behavior.py: seed, then build the model
        self.behavior = BDiffusion.BDiffusion_Behavior(*self.dims, args.marginal_prob_std_fn, args=args).to(args.device)
        self.rng["behavior"] = (torch.get_rng_state(), np.random.get_state())
        seed_everything(self.seed)  # train_critic.py: the same
        self.iql = BDiffusion.IQL_policy(*self.dims, args=args).to(args.device)
        self.rng["critic"] = (torch.get_rng_state(), np.random.get_state())

    def serve_batches(self) -> None:
        """Each step starts a new epoch of the release's loader at its first order: its shuffle (one randperm)
        then puts the served rows first, and its batch is those rows."""
        self.batches_served = True

    @on_device
    def begin_stage(self, stage: str) -> None:
        import BDiffusion
        import dataset

        a = self.args
        seed_everything(self.seed)  # each of the release's scripts starts from the seed
        if stage in self.rng:
            torch.set_rng_state(self.rng[stage][0])
            np.random.set_state(self.rng[stage][1])
        else:
            path = Path(self.folder.name) / "behavior.pth"
            torch.save(self.behavior.state_dict(), path)
            self.policy = BDiffusion.EDA_policy(*self.dims, a.marginal_prob_std_fn, actor_load_path=str(path), args=a)
            self.policy = self.policy.to(a.device)
            self.policy.q[0].load_state_dict(self.iql.q[0].state_dict())  # the critic, as train_critic.py meant
        self.loader = dataset.D4RL_dataset(a)
        if stage == "align":
            self._support_actions()
        self.first_order = {k: getattr(self.loader, k) for k in LOADER_FIELDS if hasattr(self.loader, k)}

    def _support_actions(self) -> None:
        """finetune_policy.py: M behavior samples for every dataset state, in the loader's order."""
        behavior, states = self.policy.diffusion_behavior, self.loader.states[:].cpu().numpy()
        behavior.eval()
        chunks = np.array_split(states, states.shape[0] // CANDIDATE_CHUNK + 1)
        actions = np.concatenate([behavior.sample(s, sample_per_state=self.args.M, diffusion_steps=15) for s in chunks])
        self.loader.fake_actions = torch.Tensor(actions.astype(np.float32)).to(self.args.device)
        behavior.train()

    def _sample(self, batch_size: int) -> dict[str, Any]:
        """The loader's next batch; with `serve_batches`, from a new epoch at the loader's first order."""
        if self.batches_served:
            for key, value in self.first_order.items():
                setattr(self.loader, key, value)
            self.loader.current_idx = 0
        return self.loader.sample(batch_size)

    @on_device
    def step(self, stage: str) -> dict[str, float]:
        c = self.config
        if stage == "behavior":
            self.behavior.update_behavior(self._sample(c.behavior_batch_size))
            return {"bdm_loss": self.behavior.loss.item()}
        if stage == "critic":
            self.iql.update_iql(self._sample(c.critic_batch_size))
            q = self.iql.q[0]
            metrics = {"v_loss": q.v_loss.item(), "q_loss": q.q_loss.item(), "q": q.q.item()}
            return self.renamed({**metrics, "critic_loss": metrics["v_loss"] + metrics["q_loss"]})
        return {"align_loss": self.policy.update_policy(self._sample(self.args.policy_batchsize))}

    @on_device
    def act(self, obs: np.ndarray) -> np.ndarray:
        states = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        actions = self.policy.select_actions_sfbc(states, diffusion_steps=15,
                                                  sample_per_state=self.config.eval_candidates, base="policy")
        return np.clip(actions, -1.0, 1.0)

    @on_device
    def diagnostic_act(self, policy: str, obs: np.ndarray) -> np.ndarray:
        """`behavior`: one sample of the behavior model per state (its `sample`, DPM-Solver with 15 steps as for
        the support actions, in eval mode), no Q, as offdiff's EDA's diagnostic; clipped as acting clips."""
        actions = self.behavior.diffusion_behavior.sample(obs, sample_per_state=1, diffusion_steps=15)
        return np.clip(actions[:, 0], -1.0, 1.0)

    def modules(self) -> dict[str, torch.nn.Module]:
        found = {"behavior": getattr(self, "behavior", None)}
        if hasattr(self, "iql"):
            found["critic"] = self.iql.q[0]  # a plain list in the release: not a submodule of IQL_policy
        if hasattr(self, "policy"):
            found["policy"] = self.policy.diffusion_policy
        return {k: m for k, m in found.items() if m is not None}

    # -- the same-draws check ----------------------------------------------------------------------------
    def twin_tensors(self, algo: Algorithm) -> dict[str, Pairs]:
        """Before alignment: `BDiffusion_Behavior`'s score net against offdiff's behavior, `IQL_Critic` (q0's
        heads and vf; q0_target's heads) against offdiff's `IQLCritic`. From alignment on, `EDA_policy`'s own
        copies: diffusion_behavior, q[0], and diffusion_policy against offdiff's policy, and the support actions."""
        obs_dim = self.spec.obs_dim
        aligning = hasattr(self, "policy")
        behavior = self.policy.diffusion_behavior if aligning else self.behavior.diffusion_behavior
        critic = (self.policy if aligning else self.iql).q[0]
        found = {"behavior": score_net_pairs(behavior, algo.behavior.net, "behavior"),
                 "critic": q_pairs(critic.q0, algo.critic.q.online, obs_dim, "critic")
                 + twins.plain(critic.vf.v, algo.critic.v.net, "critic V"),
                 "critic_target": q_pairs(critic.q0_target, algo.critic.q.target, obs_dim, "critic_target")}
        if aligning:
            found["policy"] = score_net_pairs(self.policy.diffusion_policy, algo.policy.net, "policy")
            found["support_actions_rel"] = self._support_pairs(algo)
        return found

    def _support_pairs(self, algo: Algorithm) -> Pairs:
        """The release's support actions (the loader's first order: state by state) against offdiff's alignment
        set's candidates taken to the same states: both sides' DPM-Solver samples of the behavior, from the same
        x_1 (`stage_draws`). Both divided by max(1, offdiff's largest |action|): an early behavior's samples reach
        hundreds, where rounding alone is above the tolerance. Copies, not views: the sets do not change."""
        candidates = algo.alignment_set.actions  # (n, K, A) in the set's order
        by_state = torch.empty_like(candidates)
        by_state[self.alignment_order] = candidates
        size = max(1.0, float(by_state.abs().max()))
        return twins.checked([(self.first_order["fake_actions"] / size, by_state / size)], "support actions")

    def stage_draws(self, stage: str, draws: list[Draw]) -> list[Draw]:
        """Alignment. offdiff: the set's seed, its permutation of the states, then the candidates' x_1 per chunk
        of states (K per state, in the permutation's order). The release: the Fourier weights of the behavior
        copy `EDA_policy` builds and then loads (any values), then x_1 per chunk of `np.array_split` in the
        loader's order: each state's noise is the noise offdiff drew for the same state."""
        if stage != "align":
            return super().stage_draws(stage, draws)
        kinds = ["integers", "permutation", *["normal"] * (len(draws) - 2)]
        _, order, *noise = self.expect_draws(draws, kinds, "start of align")
        n, k, a = len(order.value), self.config.num_candidates, self.spec.act_dim
        by_state = torch.empty(n, k, a)
        by_state[order.value] = torch.cat([d.value for d in noise]).reshape(n, k, a)
        self.alignment_order = order.value  # offdiff's alignment set: position p holds the dataset's state order[p]
        sizes = [len(chunk) for chunk in np.array_split(np.arange(n), n // CANDIDATE_CHUNK + 1)]
        return [Draw("normal", torch.zeros(FOURIER_WEIGHTS)),
                *(Draw("normal", chunk.reshape(-1, a)) for chunk in by_state.split(sizes))]

    def _rows(self, rows: torch.Tensor) -> Draw:
        """The loader's shuffle, served so that its first rows are `rows` (the rest of its order is never read)."""
        n = self.loader.len
        if len(rows) > n:
            raise OffdiffError(f"same draws: a batch of {len(rows)} rows is more than the {n} the release's loader has")
        return Draw("permutation", torch.cat([rows, torch.arange(n - len(rows))]))

    def step_draws(self, stage: str, draws: list[Draw]) -> list[Draw]:
        """offdiff: rows, then (behavior, align) t as a uniform and the noise; the release: its shuffle (served
        with the rows first, see `serve_batches`), then t and the noise. Alignment rows are offdiff's set
        positions, taken to the dataset's states through the set's order."""
        kinds = {"behavior": ["integers", "uniform", "normal"], "critic": ["integers"],
                 "align": ["integers", "uniform", "normal"]}[stage]
        rows, *rest = self.expect_draws(draws, kinds, f"{stage} step")
        index = self.alignment_order[rows.value] if stage == "align" else rows.value
        return [self._rows(index), *rest]

    def act_draws(self, draws: list[Draw]) -> list[Draw]:
        """The same order on both sides: x_1 of the candidates' chain (the choice is an argmax)."""
        return self.expect_draws(draws, ["normal"], "act")
