"""A multi-task SAC update in plain torch: the measuring stick for the product's SAC update.

Not a product path (the product trains with RLlib's SAC): it is what one thread does with
the same networks and batch when nothing else runs. MT-SAC as the MT10 papers run it: an
actor MLP on ``[state, one-hot]`` giving a tanh-squashed Gaussian, twin Q MLPs on
``[state, one-hot, action]`` with Polyak-averaged targets, one learnable entropy temperature
per task, Adam for each part; Huber critic loss and the update order of RLlib's SAC learner
(critic, twin critic, actor, temperatures, then the target update). `benchmarks.mt10` times
it in the same run as the product, next to bare MT10 stepping.
"""

from __future__ import annotations

import copy
import math
import statistics
import time

import torch
from torch import nn

from policies import mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class MinimalMTSAC:
    """Plain-torch MT-SAC: networks, optimizers and one `update` on a replayed batch."""

    def __init__(self, state_dim: int = 39, num_tasks: int = 10, action_dim: int = 4,
                 hidden: list[int] | None = None, lr: float = 3e-4, gamma: float = 0.99, tau: float = 5e-3) -> None:
        hidden = list(hidden or [256, 256])
        obs_dim = state_dim + num_tasks
        self.num_tasks, self.gamma, self.tau = num_tasks, gamma, tau
        self.actor = mlp(obs_dim, 2 * action_dim, hidden)
        self.q1, self.q2 = mlp(obs_dim + action_dim, 1, hidden), mlp(obs_dim + action_dim, 1, hidden)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        for p in [*self.q1_target.parameters(), *self.q2_target.parameters()]:
            p.requires_grad_(False)
        self.log_alpha = torch.zeros(num_tasks, requires_grad=True)
        self.target_entropy = -float(action_dim)
        self.optims = [torch.optim.Adam(self.q1.parameters(), lr=lr), torch.optim.Adam(self.q2.parameters(), lr=lr),
                       torch.optim.Adam(self.actor.parameters(), lr=lr), torch.optim.Adam([self.log_alpha], lr=lr)]

    def _policy(self, obs: torch.Tensor, reparameterize: bool) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.actor(obs).chunk(2, dim=-1)
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        u = mean + std * torch.randn_like(mean) if reparameterize else (mean + std * torch.randn_like(mean)).detach()
        logp = (-0.5 * ((u - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        action = torch.tanh(u)
        return action, logp - torch.log(1 - action.pow(2) + 1e-6).sum(-1)

    def update(self, batch: dict[str, torch.Tensor]) -> None:
        obs, next_obs, action = batch["obs"], batch["new_obs"], batch["actions"]
        task = obs[:, -self.num_tasks:].argmax(-1)
        alpha = self.log_alpha.exp().detach()[task]
        with torch.no_grad():
            next_action, next_logp = self._policy(next_obs, reparameterize=False)
            x_next = torch.cat([next_obs, next_action], -1)
            soft_next = torch.min(self.q1_target(x_next), self.q2_target(x_next)).squeeze(-1) - alpha * next_logp
            target = batch["rewards"] + self.gamma * (1 - batch["terminateds"].float()) * soft_next
        x = torch.cat([obs, action], -1)
        for q, optim in ((self.q1, self.optims[0]), (self.q2, self.optims[1])):
            loss = nn.functional.huber_loss(q(x).squeeze(-1), target)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        new_action, logp = self._policy(obs, reparameterize=True)
        x_new = torch.cat([obs, new_action], -1)
        for p in [*self.q1.parameters(), *self.q2.parameters()]:
            p.requires_grad_(False)
        actor_loss = (alpha * logp - torch.min(self.q1(x_new), self.q2(x_new)).squeeze(-1)).mean()
        self.optims[2].zero_grad(set_to_none=True)
        actor_loss.backward()
        self.optims[2].step()
        for p in [*self.q1.parameters(), *self.q2.parameters()]:
            p.requires_grad_(True)
        counts = torch.bincount(task, minlength=self.num_tasks).clamp(min=1)
        gap = torch.zeros(self.num_tasks).index_add(0, task, logp.detach() + self.target_entropy) / counts
        alpha_loss = -(self.log_alpha * gap).sum()
        self.optims[3].zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.optims[3].step()
        with torch.no_grad():
            for target_net, net in ((self.q1_target, self.q1), (self.q2_target, self.q2)):
                for tp, p in zip(target_net.parameters(), net.parameters()):
                    tp.mul_(1 - self.tau).add_(p, alpha=self.tau)


def random_batch(batch_size: int, state_dim: int = 39, num_tasks: int = 10, action_dim: int = 4,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """A replayed-batch stand-in with MT10's shapes (every task's one-hot present)."""
    g = torch.Generator().manual_seed(seed)
    onehot = torch.eye(num_tasks)[torch.arange(batch_size) % num_tasks]

    def obs() -> torch.Tensor:
        return torch.cat([torch.randn(batch_size, state_dim, generator=g), onehot], -1)

    return {"obs": obs(), "new_obs": obs(), "actions": torch.rand(batch_size, action_dim, generator=g) * 2 - 1,
            "rewards": torch.randn(batch_size, generator=g), "terminateds": torch.zeros(batch_size, dtype=torch.bool)}


def plain_update_seconds(batch_size: int, hidden: list[int], updates: int = 60, warmup: int = 10) -> float:
    """Median seconds of one plain-torch MT-SAC update (one torch thread), fresh batches each time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        sac = MinimalMTSAC(hidden=hidden)
        batches = [random_batch(batch_size, seed=i) for i in range(8)]
        times = []
        for i in range(warmup + updates):
            started = time.perf_counter()
            sac.update(batches[i % len(batches)])
            times.append(time.perf_counter() - started)
        return statistics.median(times[warmup:])
    finally:
        torch.set_num_threads(threads)


__all__ = ["MinimalMTSAC", "plain_update_seconds", "random_batch"]
