"""DTQL (Chen, Wang, Zhou, NeurIPS 2024): a one-step policy kept inside a diffusion trust region.

A diffusion model μ_φ (EDM) clones the behaviour; a tanh-Gaussian one-step policy π_θ, deployed alone,
maximises Q while the frozen diffusion model's own loss, evaluated at its actions, keeps it in-data:

  BC:      L(φ) = E_{σ,ε} mean ((D_φ(a + σε; σ, s) − a) / c_out(σ))²                 a from the dataset
  TR:      L_TR(θ) = the same loss at a_θ ~ π_θ(·|s), φ frozen (gradient through both uses of a_θ)
  policy:  L_π(θ) = α·L_TR(θ) − E min(Q1, Q2)(s, a_θ) + γ_NLL·E[−log π_θ(a|s)]        (online critic)
  critic:  L_V = E |τ − 1(u<0)|·u²,  u = min(Q1, Q2)(s, a) − V(s)    y = r + γ(1 − d)·V(s')
           L_Q = Σ_j E (Q_j(s, a) − y)²                                               (IQL, online nets)

One step: critic, then BC, then policy, then Polyak τ = 0.005 and the cosine schedules. A 50k-step
pretraining phase trains only BC and critic (cached). Acting: 1024 policy samples per state, one drawn
from softmax(min(Q1', Q2')) of the target critic. `regularizer="kl"` swaps L_TR for DQL-KL (kl.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import torch

from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec, Metrics, Stage
from offdiff.config import AT_LEAST_1, FRACTION, NON_NEGATIVE, POSITIVE, RATE, UNIT, budget, field
from offdiff.critics import IQLCritic
from offdiff.data.buffer import Batch
from offdiff.diffusion import EDM, EDMSchedule, ScoreMLP
from offdiff.errors import OffdiffError
from offdiff.nets import Mish, TanhGaussianPolicy, frozen, in_row_chunks, rows_per_call, softmax_choice
from offdiff.optim import cosine_decay, optimizer_step
from offdiff_dtql.kl import KLDistillation
from offdiff_dtql.presets import PRESETS

MAX_ACTION = 1.0  # the suite scales every action box to [-1, 1]
DIAGNOSTIC_SAMPLER_STEPS = 18  # noise levels of EDM's Heun sampler when the diffusion model acts as a diagnostic


@dataclasses.dataclass(frozen=True)
class DTQLConfig(AlgorithmConfig):
    """Defaults are the release's `main.py` defaults (halfcheetah-medium); presets set the rest per task."""

    pretrain_steps: int = budget(50_000, "pretraining steps: diffusion BC and critic only (cached, shared)")
    steps: int = budget(1_000_000, "main-phase steps: critic, BC, one-step policy")
    batch_size: int = field(256, "transitions per gradient step", AT_LEAST_1)
    lr: float = field(3e-4, "diffusion model and policy learning rate, Adam (KL: also generator, fake score)",
                      POSITIVE)
    critic_lr: float = field(3e-4, "critic learning rate, Adam", POSITIVE)
    alpha: float = field(1.0, "α: weight of the trust-region (or KL) term in the policy loss", NON_NEGATIVE)
    gamma_nll: float = field(0.0, "weight of the NLL term on dataset actions (`gamma` in the release)", NON_NEGATIVE)
    lr_decay: bool = field(False, "cosine annealing of the learning rates to 0 over the main phase, per step")
    expectile: float = field(0.7, "IQL expectile τ of the value loss", RATE)
    discount: float = field(0.99, "γ: discount of the TD target", UNIT)
    tau: float = field(0.005, "Polyak rate of the target critic", FRACTION)
    value_from_target: bool = field(False, "V-loss on the target Q (the paper's Eq. 6) instead of the online Q "
                                           "(the release)")
    sigma_data: float = field(0.5, "EDM σ_data: the data's assumed standard deviation", POSITIVE)
    sigma_min: float = field(0.002, "EDM smallest noise level", POSITIVE)
    sigma_max: float = field(80.0, "EDM largest noise level", POSITIVE)
    clip_denoised: bool = field(True, "clamp the denoiser's output to the action bound inside the loss")
    diffusion_hidden: int = field(256, "width of the diffusion model's hidden layers", AT_LEAST_1)
    diffusion_layers: int = field(4, "hidden layers of the diffusion model", AT_LEAST_1)
    time_dim: int = field(16, "size of the diffusion model's noise-level embedding", AT_LEAST_1)
    policy_hidden: int = field(256, "width of the one-step policy's hidden layers", AT_LEAST_1)
    critic_hidden: int = field(256, "width of the critic's hidden layers", AT_LEAST_1)
    eval_candidates: int = field(1024, "policy samples per state when acting; one is drawn by softmax(Q')",
                                 AT_LEAST_1)
    regularizer: Literal["tr", "kl"] = field("tr", "policy regularizer: diffusion trust region (tr) or DQL-KL (kl)")
    generation_sigma: float = field(2.5, "KL only: the generator's noise scale and time input", POSITIVE)


# What the cacheable pretraining (diffusion BC + critic) depends on, besides data, transforms, seed and stage.
PRETRAIN_KEYS = ("lr", "critic_lr", "expectile", "discount", "value_from_target", "sigma_data", "sigma_min",
                 "sigma_max", "clip_denoised", "diffusion_hidden", "diffusion_layers", "time_dim", "critic_hidden")


class DTQL(Algorithm):
    name = "dtql"
    display_name = "DTQL"
    Config = DTQLConfig
    presets = PRESETS
    smoke_config = {"diffusion_hidden": 16, "policy_hidden": 16, "critic_hidden": 16, "time_dim": 4, "batch_size": 8,
                    "eval_candidates": 4}

    def __init__(self, config: DTQLConfig, spec: EnvSpec, device: torch.device, generator: torch.Generator):
        super().__init__(config, spec, device, generator)
        c = config
        if c.regularizer == "kl" and c.gamma_nll != 0:
            raise OffdiffError("regularizer=kl has no NLL term (its generator has no density); set gamma_nll=0")
        obs_dim, act_dim = spec.obs_dim, spec.act_dim
        # Built first, so their initialisation (and the cached pretraining) does not depend on the policy.
        schedule = EDMSchedule(c.sigma_data, c.sigma_min, c.sigma_max)
        score = ScoreMLP(obs_dim, act_dim, c.diffusion_hidden, c.diffusion_layers, c.time_dim)
        self.diffusion = EDM(score, schedule, act_dim, MAX_ACTION if c.clip_denoised else None).to(self.device)
        self.critic = IQLCritic(obs_dim, act_dim, (c.critic_hidden,) * 3, Mish, q_layer_norm=True,
                                v_layer_norm=False, value_from_target=c.value_from_target).to(self.device)
        self.opts = {"diffusion": torch.optim.Adam(self.diffusion.parameters(), lr=c.lr),
                     "critic": torch.optim.Adam(self.critic.parameters_to_train(), lr=c.critic_lr)}
        if c.regularizer == "tr":
            self.actor: torch.nn.Module = TanhGaussianPolicy(obs_dim, act_dim, (c.policy_hidden,) * 3, MAX_ACTION)
            self.opts["policy"] = torch.optim.Adam(self.actor.parameters(), lr=c.lr)
        else:
            self.actor = KLDistillation(self.diffusion, act_dim, c.generation_sigma)
            self.opts["generator"] = torch.optim.Adam(self.actor.generator.parameters(), lr=c.lr)
            self.opts["fake_score"] = torch.optim.Adam(self.actor.fake.parameters(), lr=c.lr)
        self.actor.to(self.device)
        decay = cosine_decay(c.steps) if c.lr_decay else (lambda step: 1.0)
        self.scheds = {k: torch.optim.lr_scheduler.LambdaLR(o, decay) for k, o in self.opts.items()}

    @classmethod
    def stage_plan(cls, c: DTQLConfig) -> list[Stage]:
        return [Stage("pretrain", c.pretrain_steps, c.batch_size, evaluate=False, cacheable=True,
                      config_keys=PRETRAIN_KEYS, diagnostic_policy="diffusion", q_calibration=True),
                Stage("main", c.steps, c.batch_size, q_calibration=True)]

    def modules(self) -> Mapping[str, torch.nn.Module]:
        return {"diffusion": self.diffusion, "critic": self.critic, "actor": self.actor}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return self.opts

    def schedulers(self) -> Mapping[str, Any]:
        return self.scheds

    # -- the cacheable pretraining artifact: diffusion model, critic, their optimizers, the generator ----------
    def stage_artifact(self, stage: str) -> dict[str, Any]:
        return {"diffusion": self.diffusion.state_dict(), "critic": self.critic.state_dict(),
                "diffusion_opt": self.opts["diffusion"].state_dict(), "critic_opt": self.opts["critic"].state_dict(),
                "generator": self.generator.get_state()}

    def load_stage_artifact(self, stage: str, artifact: Mapping[str, Any]) -> None:
        self.diffusion.load_state_dict(artifact["diffusion"])
        self.critic.load_state_dict(artifact["critic"])
        self.opts["diffusion"].load_state_dict(artifact["diffusion_opt"])
        self.opts["critic"].load_state_dict(artifact["critic_opt"])
        self.generator.set_state(artifact["generator"])

    # -- one step --------------------------------------------------------------------------------------------
    def update(self, stage: str, batch: Batch, step: int) -> Metrics:
        c = self.config
        critic_loss, metrics = self.critic.loss(batch, c.expectile, c.discount)
        optimizer_step(self.opts["critic"], critic_loss)
        bc_loss = self.diffusion.loss(batch.actions, batch.obs, self.generator)
        optimizer_step(self.opts["diffusion"], bc_loss)
        metrics.update(critic_loss=critic_loss.detach(), bc_loss=bc_loss.detach())
        if stage == "main":
            # The policy step is taken before `metrics.update` is looked up: its backward splits the compiled
            # graph, and torch 2.11's Dynamo recompiled the resumed frame at every step (past its recompile
            # limit, on CUDA) when the bound `metrics.update` sat on the stack across that split.
            if isinstance(self.actor, KLDistillation):
                if step == 0:
                    self.actor.init_from(self.diffusion)
                policy_metrics = self._kl_step(batch)
            else:
                policy_metrics = self._policy_step(batch)
            metrics.update(policy_metrics)
            self.critic.update_target(c.tau)
            for scheduler in self.scheds.values():
                scheduler.step()
        return metrics

    def _q_policy(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """min(Q1, Q2)(s, a) of the online critic, differentiable in a only."""
        with frozen(self.critic):
            return self.critic.q_min(obs, actions)

    def _policy_step(self, batch: Batch) -> Metrics:
        """L_π = α·L_TR − E min Q(s, a_θ) + γ_NLL·E[−log π_θ(a_data|s)]."""
        c = self.config
        pi = self.actor(batch.obs)
        actions = pi.rsample(self.generator)
        with frozen(self.diffusion):  # L_TR: the BC loss at a_θ, φ frozen; the gradient reaches a_θ twice
            tr_loss = self.diffusion.loss(actions, batch.obs, self.generator)
        q = self._q_policy(batch.obs, actions)
        nll = pi.nll(batch.actions).mean()
        loss = c.alpha * tr_loss - q.mean() + c.gamma_nll * nll
        optimizer_step(self.opts["policy"], loss)
        return {"tr_loss": tr_loss.detach(), "q_policy": q.detach().mean(), "nll": nll.detach(),
                "policy_loss": loss.detach(), "policy_std": pi.std.detach().mean()}

    def _kl_step(self, batch: Batch) -> Metrics:
        """L_G = α·L_KL − E min Q(s, a_θ); then the fake score's EDM loss on the detached a_θ."""
        kl = self.actor
        actions = kl.sample(batch.obs, self.generator)
        kl_loss = kl.kl_loss(actions, batch.obs, self.diffusion, self.generator)
        q = self._q_policy(batch.obs, actions)
        loss = self.config.alpha * kl_loss - q.mean()
        optimizer_step(self.opts["generator"], loss)
        fake_loss = kl.fake.loss(actions.detach(), batch.obs, self.generator)
        optimizer_step(self.opts["fake_score"], fake_loss)
        return {"kl_loss": kl_loss.detach(), "q_policy": q.detach().mean(), "policy_loss": loss.detach(),
                "fake_score_loss": fake_loss.detach()}

    # -- diagnostics: the pretrained diffusion model as a policy; the target critic's Q ---------------------
    @torch.no_grad()
    def diagnostic_act(self, policy: str, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`diffusion`: one sample of μ_φ(·|s) per state by EDM's Heun sampler (behaviour cloning, no Q)."""
        if policy != "diffusion":
            raise KeyError(f"DTQL has no diagnostic policy {policy!r}")
        actions = self.diffusion.sample(obs, generator, solver="heun", steps=DIAGNOSTIC_SAMPLER_STEPS)
        return actions.clamp(-MAX_ACTION, MAX_ACTION)

    def critic_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.critic.target_q_min(obs, actions)  # the Q that picks the executed action

    # -- acting ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`eval_candidates` policy samples per state; one drawn with probability softmax(min(Q1', Q2'))."""
        generator = generator or self.generator
        n, k = obs.shape[0], self.config.eval_candidates
        repeated = obs.repeat_interleave(k, dim=0)
        if isinstance(self.actor, KLDistillation):
            actions = self.actor.sample(repeated, generator).clamp(-MAX_ACTION, MAX_ACTION)
        else:  # π_θ(·|s) once per state, then k samples of it
            actions = self.actor(obs).repeat_interleave(k).rsample(generator)
        q = in_row_chunks(self.critic.target_q_min, repeated, actions, rows=rows_per_call(self.device)).view(n, k)
        return softmax_choice(actions.view(n, k, -1), q, generator)
