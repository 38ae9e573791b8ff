"""A minimal PPO loop in plain torch: the measuring stick for RLlib PPO's throughput.

Not a product path (the product trains with RLlib's PPO): it is what one core can do
with the same vector env, task set, action mask, network sizes and PPO settings when
nothing but sampling and learning runs, one thread, no Ray. `benchmarks.rl_throughput`
times it in the same run as the product, like bare env stepping.

The objective follows RLlib's new-stack PPO defaults so the arithmetic is the same:
separate policy and value MLPs, clipped surrogate, clipped value loss (vf_clip_param 10),
entropy bonus, KL penalty (kl_coeff 0.2), GAE, Adam, minibatch SGD over epochs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from policies import mlp
from policies.action_masking import mask_logits


@dataclass
class MinimalPPOSettings:
    """The knobs of the loop; `from_config` copies them from an experiment config."""

    tasks: list[str]
    horizon: int = 64
    action_mask: bool = True
    num_envs: int = 256
    train_batch_size: int = 16384
    minibatch_size: int = 2048
    num_epochs: int = 2
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = "relu"
    lr: float = 3e-4
    gamma: float = 0.99
    lam: float = 0.95
    clip_param: float = 0.2
    vf_clip_param: float = 10.0
    vf_loss_coeff: float = 0.5
    entropy_coeff: float = 0.0
    kl_coeff: float = 0.2
    seed: int = 0

    @classmethod
    def from_config(cls, cfg, tasks: list[str]) -> "MinimalPPOSettings":
        rl = cfg.rl
        return cls(tasks=list(tasks), horizon=cfg.task.horizon, action_mask=cfg.task.action_mask,
                   num_envs=rl.num_envs_per_env_runner, train_batch_size=rl.train_batch_size,
                   minibatch_size=rl.minibatch_size, num_epochs=rl.num_epochs, hidden=list(cfg.model.hidden),
                   activation=cfg.model.activation, lr=rl.lr, gamma=rl.gamma, lam=rl.lambda_,
                   clip_param=rl.clip_param, vf_loss_coeff=rl.vf_loss_coeff, entropy_coeff=rl.entropy_coeff,
                   seed=cfg.seed)


class MinimalPPO:
    """The loop's state (env, networks, optimizer); `iteration()` samples one batch and learns on it."""

    def __init__(self, settings: MinimalPPOSettings) -> None:
        from tasks.simon_says import SimonSaysVectorEnv

        s = self.settings = settings
        torch.manual_seed(s.seed)
        self.env = SimonSaysVectorEnv(num_envs=s.num_envs, tasks=s.tasks, horizon=s.horizon, action_mask=s.action_mask)
        self.obs, _ = self.env.reset(seed=s.seed)
        space = self.env.single_observation_space
        self.obs_dim = space["observations"].shape[0] if s.action_mask else space.shape[0]
        self.n_actions = int(self.env.single_action_space.n)
        self.pi = mlp(self.obs_dim, self.n_actions, s.hidden, s.activation)
        self.vf = mlp(self.obs_dim, 1, s.hidden, s.activation)
        self.opt = torch.optim.Adam([*self.pi.parameters(), *self.vf.parameters()], lr=s.lr)
        self.rng = np.random.default_rng(s.seed)
        self.done_before = np.zeros(s.num_envs, dtype=bool)  # NEXT_STEP autoreset: the step after a done only resets
        self.env_steps_per_iteration = (s.train_batch_size // s.num_envs) * s.num_envs
        self.mean_return = 0.0

    def iteration(self) -> tuple[float, float]:
        """One PPO iteration on one torch thread; (sampling seconds, learning seconds)."""
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t0 = time.perf_counter()
            batch = self._sample()
            t1 = time.perf_counter()
            self._learn(*batch)
            return t1 - t0, time.perf_counter() - t1
        finally:
            torch.set_num_threads(previous_threads)

    def _sample(self):
        s, n, obs_dim, n_actions = self.settings, self.settings.num_envs, self.obs_dim, self.n_actions
        steps = s.train_batch_size // n
        buf_obs = np.empty((steps + 1, n, obs_dim), np.float32)
        buf_mask = np.empty((steps, n, n_actions), np.float32) if s.action_mask else None
        buf_act = np.empty((steps, n), np.int64)
        buf_logp = np.empty((steps, n), np.float32)
        buf_logits = np.empty((steps, n, n_actions), np.float32)
        buf_rew = np.empty((steps, n), np.float32)
        buf_term = np.empty((steps, n), bool)
        buf_done = np.empty((steps, n), bool)
        buf_valid = np.empty((steps, n), bool)
        ep_return = np.zeros(n)
        finished: list[float] = []
        obs = self.obs
        with torch.no_grad():
            for t in range(steps):
                flat = obs["observations"] if s.action_mask else obs
                buf_obs[t] = flat
                logits = self.pi(torch.from_numpy(flat))
                if s.action_mask:
                    buf_mask[t] = obs["action_mask"]
                    logits = mask_logits(logits, torch.from_numpy(buf_mask[t]))
                logp_all = torch.log_softmax(logits, -1)
                cdf = logp_all.exp().cumsum(-1)
                u = torch.from_numpy(self.rng.random((n, 1), dtype=np.float32)) * cdf[:, -1:]
                act = torch.searchsorted(cdf, u, right=True).clamp_max_(n_actions - 1).squeeze(-1)
                buf_act[t] = act.numpy()
                buf_logp[t] = logp_all.gather(-1, act[:, None]).squeeze(-1).numpy()
                buf_logits[t] = logits.numpy()
                obs, rew, term, trunc, _ = self.env.step(buf_act[t])
                buf_valid[t] = ~self.done_before
                buf_rew[t], buf_term[t] = rew, term
                self.done_before = buf_done[t] = term | trunc
                ep_return += rew
                if self.done_before.any():
                    finished.extend(ep_return[self.done_before].tolist())
                    ep_return[self.done_before] = 0.0
            buf_obs[steps] = obs["observations"] if s.action_mask else obs
            values = self.vf(torch.from_numpy(buf_obs.reshape(-1, obs_dim))).reshape(steps + 1, n).numpy()
        self.obs = obs
        self.mean_return = float(np.mean(finished)) if finished else 0.0
        adv = np.zeros((steps, n), np.float32)
        last = np.zeros(n, np.float32)
        for t in reversed(range(steps)):  # GAE; a done cuts the trace, truncation bootstraps
            delta = buf_rew[t] + s.gamma * values[t + 1] * (~buf_term[t]) - values[t]
            last = delta + s.gamma * s.lam * (~buf_done[t]) * last
            adv[t] = last
        ret = adv + values[:-1]
        keep = buf_valid.reshape(-1)  # an env's reset step is no transition
        b_adv = torch.from_numpy(adv.reshape(-1)[keep])
        return (torch.from_numpy(buf_obs[:-1].reshape(-1, obs_dim)[keep]),
                torch.from_numpy(buf_mask.reshape(-1, n_actions)[keep]) if s.action_mask else None,
                torch.from_numpy(buf_act.reshape(-1)[keep]), torch.from_numpy(buf_logp.reshape(-1)[keep]),
                torch.log_softmax(torch.from_numpy(buf_logits.reshape(-1, n_actions)[keep]), -1),
                (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8), torch.from_numpy(ret.reshape(-1)[keep]))

    def _learn(self, b_obs, b_mask, b_act, b_logp, b_old_logp_all, b_adv, b_ret) -> None:
        s = self.settings
        total = b_obs.shape[0]
        for _ in range(s.num_epochs):
            perm = torch.randperm(total)
            for start in range(0, total, s.minibatch_size):
                idx = perm[start:start + s.minibatch_size]
                logits = self.pi(b_obs[idx])
                if b_mask is not None:
                    logits = mask_logits(logits, b_mask[idx])
                logp_all = torch.log_softmax(logits, -1)
                probs = torch.softmax(logits, -1)
                logp = logp_all.gather(-1, b_act[idx, None]).squeeze(-1)
                ratio = torch.exp(logp - b_logp[idx])
                a = b_adv[idx]
                surrogate = torch.min(a * ratio, a * ratio.clamp(1 - s.clip_param, 1 + s.clip_param))
                old_logp_all = b_old_logp_all[idx]
                kl = (old_logp_all.exp() * (old_logp_all - logp_all)).sum(-1)
                entropy = -(probs * logp_all).sum(-1)
                vf_loss = ((self.vf(b_obs[idx]).squeeze(-1) - b_ret[idx]) ** 2).clamp(0, s.vf_clip_param)
                loss = (-surrogate + s.vf_loss_coeff * vf_loss - s.entropy_coeff * entropy + s.kl_coeff * kl).mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
