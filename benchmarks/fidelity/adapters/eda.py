"""EDA (thu-ml/Efficient-Diffusion-Alignment @ 2f96929, with its documented one-line fix): `BDiffusion`.

Drives the release's three scripts as one run, in their order and with their seeding (each script seeds torch
and numpy from the seed and builds its own `D4RL_dataset`): `train_behavior.py` (BDiffusion_Behavior),
`train_critic.py` (IQL_policy), `finetune_policy.py` (EDA_policy, loaded from the behavior model and the
critic just trained, with its support actions sampled as that script samples them). Acting is
`select_actions_sfbc(base="policy")`, as the script evaluates. The release hard-codes CUDA, so it needs a GPU.

The fix (README): in `EDA_policy.update_policy`, the policy's energy must be computed outside the `no_grad`
block that computes the behavior baseline; as released, backward fails.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fidelity import stubs
from fidelity.adapter import Adapter, seed_everything
from fidelity.release import Checkout
from offdiff.errors import OffdiffError

CANDIDATE_CHUNK = 256  # finetune_policy.py samples the support actions 256 states at a time


def _fix_applied(source: str) -> bool:
    """Whether `xt_model_energy` is assigned outside every `with torch.no_grad():` block of `update_policy`."""
    blocks = [n for n in ast.walk(ast.parse(textwrap.dedent(source)))
              if isinstance(n, ast.With) and "no_grad" in ast.unparse(n.items[0].context_expr)]
    return not any(isinstance(n, ast.Name) and n.id == "xt_model_energy" and isinstance(n.ctx, ast.Store)
                   for block in blocks for n in ast.walk(block))


class EDAAdapter(Adapter):
    release = "eda"
    algo = "eda"
    commit = "2f96929"
    repository = "https://github.com/thu-ml/Efficient-Diffusion-Alignment"
    metric_names = {"v_loss": "value_loss", "q": "q_data"}
    needs_cuda = True  # BDiffusion.py, dataset.py and utils.py say "cuda"

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

    def build(self) -> None:
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

    def begin_stage(self, stage: str) -> None:
        import BDiffusion
        import dataset

        a, dims = self.args, (self.spec.obs_dim + self.spec.act_dim, self.spec.act_dim)
        seed_everything(self.seed)  # each of the release's scripts starts from the seed
        if stage == "behavior":
            self.behavior = BDiffusion.BDiffusion_Behavior(*dims, a.marginal_prob_std_fn, args=a).to(a.device)
        elif stage == "critic":
            self.iql = BDiffusion.IQL_policy(*dims, args=a).to(a.device)
        else:
            path = Path(self.folder.name) / "behavior.pth"
            torch.save(self.behavior.state_dict(), path)
            self.policy = BDiffusion.EDA_policy(*dims, a.marginal_prob_std_fn, actor_load_path=str(path), args=a)
            self.policy = self.policy.to(a.device)
            self.policy.q[0].load_state_dict(self.iql.q[0].state_dict())  # the critic, as train_critic.py meant
        self.loader = dataset.D4RL_dataset(a)
        if stage == "align":
            self._support_actions()

    def _support_actions(self) -> None:
        """finetune_policy.py: M behavior samples for every dataset state, in the loader's order."""
        behavior, states = self.policy.diffusion_behavior, self.loader.states[:].cpu().numpy()
        behavior.eval()
        chunks = np.array_split(states, states.shape[0] // CANDIDATE_CHUNK + 1)
        actions = np.concatenate([behavior.sample(s, sample_per_state=self.args.M, diffusion_steps=15) for s in chunks])
        self.loader.fake_actions = torch.Tensor(actions.astype(np.float32)).to(self.args.device)
        behavior.train()

    def step(self, stage: str) -> dict[str, float]:
        c = self.config
        if stage == "behavior":
            self.behavior.update_behavior(self.loader.sample(c.behavior_batch_size))
            return {"bdm_loss": self.behavior.loss.item()}
        if stage == "critic":
            self.iql.update_iql(self.loader.sample(c.critic_batch_size))
            q = self.iql.q[0]
            metrics = {"v_loss": q.v_loss.item(), "q_loss": q.q_loss.item(), "q": q.q.item()}
            return self.renamed({**metrics, "critic_loss": metrics["v_loss"] + metrics["q_loss"]})
        return {"align_loss": self.policy.update_policy(self.loader.sample(self.args.policy_batchsize))}

    def act(self, obs: np.ndarray) -> np.ndarray:
        states = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.policy.select_actions_sfbc(states, diffusion_steps=15,
                                               sample_per_state=self.config.eval_candidates, base="policy")

    def modules(self) -> dict[str, torch.nn.Module]:
        found = {"behavior": getattr(self, "behavior", None)}
        if hasattr(self, "iql"):
            found["critic"] = self.iql.q[0]  # a plain list in the release: not a submodule of IQL_policy
        if hasattr(self, "policy"):
            found["policy"] = self.policy.diffusion_policy
        return {k: m for k, m in found.items() if m is not None}
