"""EDA (Chen, Zheng, Su, Zhu, NeurIPS 2024): align a pretrained diffusion behavior with a Q-function.

Stages:
  behavior  f_φ(a_t|s, t) scalar BDM, ε̂ = −σ_t ∇_a f_φ;  L(φ) = E ‖σ_t ∇_{a_t} f_φ(α_t a + σ_t z|s, t) + z‖²   (Eq. 10)
  critic    IQL: L_V = E|τ − 1(u<0)|u², u = min_j Q'_j(s, a) − V(s);  L_Q = ½ Σ_j E(Q_j(s, a) − r − γ(1−d)V(s'))²
  align     for each state K candidates a_k ~ μ_φ(·|s) (DPM-Solver), labelled Q_k = min_j Q'_j(s, a_k); f_θ ← f_φ
            p_k = softmax_k(α·Q_k)                                          (Eq. 14, α = 3 as released)
            ℓ_k = β·[f_θ(a_k^t|s, t) − f_φ(a_k^t|s, t)],  a_k^t = α_t a_k + σ_t z_k, one t per state     (Eq. 13)
            L(θ) = −E_s Σ_k p_k · log softmax_k(ℓ)
At the optimum β(f_θ − f_φ) = α·Q + C(s), i.e. π_θ ∝ μ_φ·exp(α·Q/β).
Acting: 4 samples of π_θ per state, execute the one with the highest min_j Q'_j.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F

from offdiff.algorithm import Algorithm, AlgorithmConfig, EnvSpec, Metrics, Stage
from offdiff.config import AT_LEAST_1, FRACTION, POSITIVE, RATE, UNIT, Range, at_least, budget, field
from offdiff.critics import IQLCritic
from offdiff.data.buffer import Batch, DeviceBuffer
from offdiff.diffusion import ContinuousVP, ContinuousVPSchedule, EnergyMLP
from offdiff.errors import OffdiffError
from offdiff.optim import optimizer_step
from offdiff_eda.presets import PRESETS

BEHAVIOR_KEYS = ("behavior_steps", "behavior_batch_size", "behavior_lr", "hidden", "num_blocks", "dropout",
                 "time_dim", "fourier_scale", "state_input", "vp_beta_0", "vp_beta_1", "t_eps")
CRITIC_KEYS = ("critic_steps", "critic_batch_size", "critic_lr", "critic_hidden", "discount", "expectile",
               "critic_tau")
# What each cacheable stage's artifact carries: everything later stages need from it and the stages before.
ARTIFACT_MODULES = {"behavior": ("behavior",), "critic": ("behavior", "critic")}
REPORT_ROWS = 1024  # dataset states of the stage reports


@dataclasses.dataclass(frozen=True)
class EDAConfig(AlgorithmConfig):
    """Defaults are the release's (`utils.py`, the training scripts) and the paper's App. D; β per task in presets."""

    reward_transform: str = field("iql_locomotion", "named reward transform (IQL's locomotion scaling, as released)")
    # Behavior BDM (1M steps × 2048, Adam 3e-4, dropout 0.1 while pretraining)
    behavior_steps: int = budget(1_000_000, "behavior diffusion model pretraining steps (cached, shared)")
    behavior_batch_size: int = field(2048, "transitions per behavior step", AT_LEAST_1)
    behavior_lr: float = field(3e-4, "behavior model learning rate, Adam", POSITIVE)
    hidden: int = field(256, "width of the energy network's residual blocks", AT_LEAST_1)
    num_blocks: int = field(3, "residual blocks of the energy network", AT_LEAST_1)
    dropout: float = field(0.1, "dropout of the behavior model while pretraining", Range(0, 1, high_open=True))
    time_dim: int = field(32, "size of the diffusion time embedding", AT_LEAST_1)
    fourier_scale: float = field(30.0, "scale of the Gaussian Fourier time features", POSITIVE)
    state_input: bool = field(True, "condition the energy network on the state (False: the toy bandits' one state)")
    vp_beta_0: float = field(0.1, "continuous VP schedule: β at t = 0", POSITIVE)
    vp_beta_1: float = field(20.0, "continuous VP schedule: β at t = 1", POSITIVE)
    t_eps: float = field(1e-3, "smallest diffusion time used in training and sampling", FRACTION)
    # IQL critic (1.5M steps × 256, Adam 3e-4)
    critic_steps: int = budget(1_500_000, "IQL critic steps (cached, shared)")
    critic_batch_size: int = field(256, "transitions per critic step", AT_LEAST_1)
    critic_lr: float = field(3e-4, "critic learning rate, Adam", POSITIVE)
    critic_hidden: int = field(256, "width of the critic's hidden layers", AT_LEAST_1)
    discount: float = field(0.99, "γ: discount of the TD target", UNIT)
    expectile: float = field(0.7, "IQL expectile τ of the value loss", RATE)
    critic_tau: float = field(0.005, "Polyak rate of the target critic", FRACTION)
    # Alignment (200k steps × 256 states × 16 candidates, Adam 5e-5)
    align_steps: int = budget(200_000, "alignment steps of the policy")
    align_batch_size: int = field(256, "states per alignment step", AT_LEAST_1)
    align_lr: float = field(5e-5, "policy learning rate, Adam", POSITIVE)
    beta: float = field(1.0, "β: strength of the alignment (π ∝ μ·exp(α·Q/β))", POSITIVE)
    q_scale: float = field(3.0, "α: temperature of the Q-labels' softmax target", POSITIVE)
    num_candidates: int = field(16, "K: candidate actions per state, labelled by Q", at_least(2))
    label_fraction: float = field(1.0, "fraction of the dataset's states given candidates", FRACTION)
    candidate_chunk: int = field(2048, "states per batch while sampling candidates (memory)", AT_LEAST_1)
    candidates: Literal["behavior", "dataset"] = field(
        "behavior", "candidates from the behavior model, or dataset actions (one-state toy bandits only)")
    # Sampling: DPM-Solver, order 2, 15 NFE; acting picks the best of `eval_candidates` under Q'
    solver_nfe: int = field(15, "DPM-Solver function evaluations per sample", AT_LEAST_1)
    solver_order: Literal[1, 2] = field(2, "DPM-Solver order")
    eval_candidates: int = field(4, "policy samples per state when acting; the best under Q' is executed",
                                 AT_LEAST_1)


@dataclasses.dataclass(frozen=True)
class AlignmentSet:
    """States of the (sub-sampled) dataset, K candidate actions each, and their Q labels."""

    obs: torch.Tensor  # (n, S)
    actions: torch.Tensor  # (n, K, A)
    q: torch.Tensor  # (n, K)
    dataset_size: int  # N: buffer rows 0..N-1 map onto 0..n-1


class EDA(Algorithm):
    name = "eda"
    display_name = "EDA"
    Config = EDAConfig
    presets = PRESETS
    smoke_config = {"hidden": 32, "time_dim": 8, "num_blocks": 1, "critic_hidden": 16, "behavior_batch_size": 16,
                    "critic_batch_size": 16, "align_batch_size": 4, "num_candidates": 4, "solver_nfe": 3,
                    "eval_candidates": 2, "label_fraction": 0.05, "candidate_chunk": 16}

    def __init__(self, config: EDAConfig, spec: EnvSpec, device: torch.device, generator: torch.Generator):
        super().__init__(config, spec, device, generator)
        c = config
        self.schedule = ContinuousVPSchedule(c.vp_beta_0, c.vp_beta_1, c.t_eps)
        self.solver = {"nfe": c.solver_nfe, "order": c.solver_order}  # DPM-Solver's, wherever a model samples
        self.behavior = self._bdm(c.dropout)
        self.critic = IQLCritic(spec.obs_dim, spec.act_dim, hidden=(c.critic_hidden,) * 2, activation=torch.nn.ReLU,
                                value_from_target=True, q_loss_scale=0.5).to(self.device)
        self.policy = self._bdm(0.0)  # θ₀ = φ is set when alignment starts; no dropout while fine-tuning
        self.behavior_opt = torch.optim.Adam(self.behavior.parameters(), lr=c.behavior_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters_to_train(), lr=c.critic_lr)
        self.policy_opt = torch.optim.Adam(self.policy.parameters(), lr=c.align_lr)
        self._alignment_seed: int | None = None  # drawn when alignment starts; rebuilds the set on resume
        self._alignment: AlignmentSet | None = None

    def _bdm(self, dropout: float) -> ContinuousVP:
        """A bottleneck diffusion model: an energy backbone on the continuous VP process, ε̂ = −σ_t ∇_a f."""
        c, spec = self.config, self.spec
        net = EnergyMLP(spec.obs_dim if c.state_input else 0, spec.act_dim, c.hidden, c.num_blocks, dropout,
                        c.time_dim, c.fourier_scale)
        return ContinuousVP(net, self.schedule, spec.act_dim, prediction="energy").to(self.device)

    @classmethod
    def stage_plan(cls, c: EDAConfig) -> list[Stage]:
        return [
            Stage("behavior", c.behavior_steps, c.behavior_batch_size, evaluate=False, cacheable=True,
                  config_keys=BEHAVIOR_KEYS, diagnostic_policy="behavior"),
            # The critic's artifact also holds the behavior model (and its run consumed the behavior's batches).
            Stage("critic", c.critic_steps, c.critic_batch_size, evaluate=False, cacheable=True,
                  config_keys=BEHAVIOR_KEYS + CRITIC_KEYS, q_calibration=True),
            Stage("align", c.align_steps, c.align_batch_size, candidate_set=True),
        ]

    def modules(self) -> Mapping[str, torch.nn.Module]:
        return {"behavior": self.behavior, "critic": self.critic, "policy": self.policy}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"behavior": self.behavior_opt, "critic": self.critic_opt, "policy": self.policy_opt}

    def compile_update(self, stage: str) -> bool:
        return stage != "behavior"  # its loss differentiates an input gradient (create_graph) and uses dropout

    # -- state: the alignment set is rebuilt from its seed, not stored ------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "alignment_seed": self._alignment_seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._alignment_seed, self._alignment = state["alignment_seed"], None

    def stage_artifact(self, stage: str) -> dict[str, Any]:
        modules = self.modules()
        return {"modules": {k: modules[k].state_dict() for k in ARTIFACT_MODULES[stage]},
                "generator": self.generator.get_state()}

    def load_stage_artifact(self, stage: str, artifact: Mapping[str, Any]) -> None:
        modules = self.modules()
        for key, state in artifact["modules"].items():
            modules[key].load_state_dict(state)
        self.generator.set_state(artifact["generator"])

    # -- stages ------------------------------------------------------------------------------
    def begin_stage(self, stage: str, data: DeviceBuffer) -> None:
        if stage != "align":
            return
        if self._alignment_seed is None:  # the stage starts (not a resume): θ₀ = φ, and fix the set's seed
            self.policy.load_state_dict(self.behavior.state_dict())
            draw = torch.randint(2**62, (1,), generator=self.generator, device=self.device)
            self._alignment_seed = int(draw.item())
        self._alignment = self._build_alignment_set(data)

    @torch.no_grad()
    def _build_alignment_set(self, data: DeviceBuffer) -> AlignmentSet:
        """Once per stage: K samples of the frozen behavior per state (DPM-Solver), labelled by min_j Q'_j."""
        c = self.config
        generator = torch.Generator(self.device).manual_seed(self._alignment_seed)
        if c.candidates == "dataset":
            return self._dataset_candidates(data, generator)
        n = max(1, int(c.label_fraction * len(data)))
        rows = torch.randperm(len(data), generator=generator, device=self.device)[:n]
        obs = data.obs[rows]
        self.behavior.eval()
        actions, q = [], []
        for chunk in obs.split(c.candidate_chunk):
            cond = chunk.repeat_interleave(c.num_candidates, dim=0)
            sampled = self.behavior.sample(cond, generator, **self.solver)
            actions.append(sampled.view(chunk.shape[0], c.num_candidates, -1))
            q.append(self.critic.target_q_min(cond, sampled).view(chunk.shape[0], c.num_candidates))
        return AlignmentSet(obs, torch.cat(actions), torch.cat(q), len(data))

    def _dataset_candidates(self, data: DeviceBuffer, generator: torch.Generator) -> AlignmentSet:
        """The paper's 2-D toy setting: groups of K dataset actions of the one state, labelled by their rewards."""
        k = self.config.num_candidates
        one_step_bandit = bool((data.not_done == 0).all()) and bool((data.obs == data.obs[:1]).all())
        if not one_step_bandit or len(data) < k:
            raise OffdiffError("candidates=dataset labels dataset actions with their rewards, which are Q only in a "
                               f"one-state, one-step bandit with >= {k} rows (the toy tasks); use candidates=behavior")
        n = max(1, int(self.config.label_fraction * len(data)) // k)
        rows = torch.randperm(len(data), generator=generator, device=self.device)[: n * k].view(n, k)
        return AlignmentSet(data.obs[rows[:, 0]], data.actions[rows], data.rewards[rows], len(data))

    @property
    def alignment_set(self) -> AlignmentSet | None:
        """The alignment stage's states, candidate actions and Q labels (None until `begin_stage("align")`)."""
        return self._alignment

    def update(self, stage: str, batch: Batch, step: int) -> Metrics:
        if stage == "behavior":
            return self._behavior_step(batch)
        if stage == "critic":
            return self._critic_step(batch)
        return self._align_step(batch)

    def _behavior_step(self, batch: Batch) -> Metrics:
        self.behavior.train()  # dropout while pretraining
        loss = self.behavior.loss(batch.actions, batch.obs, self.generator)
        optimizer_step(self.behavior_opt, loss)
        return {"bdm_loss": loss.detach()}

    def _critic_step(self, batch: Batch) -> Metrics:
        c = self.config
        loss, metrics = self.critic.loss(batch, c.expectile, c.discount)
        optimizer_step(self.critic_opt, loss)
        self.critic.update_target(c.critic_tau)
        return {"critic_loss": loss.detach(), **metrics}

    def _align_step(self, batch: Batch) -> Metrics:
        c, aligned = self.config, self._alignment
        assert aligned is not None, "begin_stage('align') builds the alignment set before the first align step"
        pos = batch.index * aligned.q.shape[0] // aligned.dataset_size  # the suite's uniform rows, onto the set
        obs, candidates, q = aligned.obs[pos], aligned.actions[pos], aligned.q[pos]
        b, k, a = candidates.shape
        target = F.softmax(c.q_scale * q, dim=1)  # p_k ∝ exp(α·Q_k)
        t = self.schedule.sample_time(b, self.generator, self.device)  # one t per state, shared by its K
        z = torch.randn(candidates.shape, generator=self.generator, device=self.device)
        noisy = self.schedule.perturb(candidates, t, z).reshape(b * k, a)
        t_flat, obs_flat = t.repeat_interleave(k), obs.repeat_interleave(k, dim=0)
        f_policy = self.policy.energy(noisy, t_flat, obs_flat).view(b, k)
        with torch.no_grad():
            self.behavior.eval()
            f_behavior = self.behavior.energy(noisy, t_flat, obs_flat).view(b, k)
        logits = c.beta * (f_policy - f_behavior)  # β·(f_θ − f_φ): the implied α·Q + C(s)
        loss = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        optimizer_step(self.policy_opt, loss)
        agree = (logits.argmax(dim=1) == q.argmax(dim=1)).float().mean()
        return {"align_loss": loss.detach(), "q_label": q.mean(), "top1_agreement": agree.detach()}

    # -- diagnostics: the behavior model as a policy; the target critic's Q ----------------------
    @torch.no_grad()
    def diagnostic_act(self, policy: str, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """`behavior`: one sample of μ_φ(·|s) per state (DPM-Solver, as for the candidates), no Q: cloning alone."""
        if policy != "behavior":
            raise KeyError(f"EDA has no diagnostic policy {policy!r}")
        self.behavior.eval()  # no dropout; every behavior step sets train() again
        return self.behavior.sample(obs, generator, **self.solver).clamp(-1.0, 1.0)

    @torch.no_grad()
    def stage_report(self, stage: str, data: DeviceBuffer, generator: torch.Generator) -> dict[str, float]:
        """On `REPORT_ROWS` random dataset states, what tells a behaviour budget from a broken alignment:

        behavior  support_margin: mean over states of f_φ(a_data|s, ε) − f_φ(u|s, ε), u ~ U[−1, 1]^A, in nats
                  (f is log μ up to C(s)); share_data_preferred: how often that difference is > 0. The alignment
                  tilts μ by α·Q/β, and this margin is what holds π_θ near the data's actions against the tilt
                  (it is near 0 wherever the data covers the box: read it beside the score and the data).
        align     outside_box: share of the sampled action coordinates of π_θ (one sample per state, before
                  the clip of acting) outside [−1, 1]; behavior_outside_box: the same for μ_φ.
        """
        if stage not in ("behavior", "align"):
            return {}
        rows = torch.randperm(len(data), generator=generator, device=self.device)[:REPORT_ROWS]
        obs, actions = data.obs[rows], data.actions[rows]
        self.behavior.eval()
        if stage == "behavior":
            t = torch.full((len(rows),), self.config.t_eps, device=self.device)
            uniform = torch.rand(actions.shape, generator=generator, device=self.device) * 2 - 1
            margin = self.behavior.energy(actions, t, obs) - self.behavior.energy(uniform, t, obs)
            return {"support_margin": float(margin.mean()), "share_data_preferred": float((margin > 0).float().mean())}
        outside = {}
        for name, model in (("outside_box", self.policy), ("behavior_outside_box", self.behavior)):
            sampled = model.sample(obs, generator, **self.solver)
            outside[name] = float((sampled.abs() > 1).float().mean())
        return outside

    def critic_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.critic.target_q_min(obs, actions)  # the Q that labels the candidates and picks actions

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw `eval_candidates` actions per state from π_θ; execute the argmax of min_j Q'_j (clipped to ±1)."""
        c, generator = self.config, generator or self.generator
        n, k = obs.shape[0], c.eval_candidates
        cond = obs.repeat_interleave(k, dim=0)
        actions = self.policy.sample(cond, generator, **self.solver).view(n, k, -1)
        best = self.critic.target_q_min(cond, actions.view(n * k, -1)).view(n, k).argmax(dim=1)
        return actions[torch.arange(n, device=obs.device), best].clamp(-1.0, 1.0)
