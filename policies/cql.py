"""Conservative Q-learning (Kumar et al. 2020) for discrete actions, task-conditioned.

One Q-network for all tasks: an MLP over the flat observation, whose first columns are
the one-hot goal (so the task conditions every layer). The loss per transition is

    TD:   huber(Q(s, a) - [r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q(s', a'))])
    CQL(H): alpha * (logsumexp_a Q(s, a) - Q(s, a_data))

with double Q (the online network picks a', the target network values it) and a Polyak
target network. ``value_range`` clips the TD target to the returns the task can have (Simon
Says: one reward of 1 at most per episode, so [0, 1]). Why: CQL(H)'s fixed point on a data
action is the Bellman backup *plus* alpha * (1 - mu(a|s) / pi_beta(a|s)) (Kumar et al. 2020,
Thm 3.1/3.2 pointwise), so on near-deterministic data the regulariser raises Q by up to alpha
per step and bootstrapping compounds it towards alpha / (1 - gamma); with rewards in [0, 1]
and alpha = 1 we measured Q of 1.6-4.5 on data whose true value is at most 1. The clip keeps
the compounding out of the targets (the one-step alpha offset remains). ``cql_update`` is one gradient step and touches nothing but its arguments,
so it runs unchanged in a plain process or in a Ray Train worker (wrap the network with
``ray.train.torch.prepare_model`` there: DDP all-reduces inside ``backward``).

RLlib 2.60's CQL (``ray.rllib.algorithms.cql``) is SAC-based and samples random actions
uniformly in ``[action_space.low, action_space.high]``: continuous (Box) actions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class CQLConfig:
    """Hyper-parameters of discrete CQL."""

    gamma: float = 0.99
    alpha: float = 1.0  # weight of the CQL(H) regulariser
    lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    tau: float = 0.005  # Polyak step of the target network per update
    double_q: bool = True
    max_grad_norm: float | None = 10.0
    value_range: tuple[float, float] | None = None  # TD targets clipped to [low, high]; None: no clip

    def __post_init__(self) -> None:
        checks = {"gamma": 0 <= self.gamma <= 1, "alpha": self.alpha >= 0, "lr": self.lr > 0,
                  "tau": 0 < self.tau <= 1, "hidden": len(self.hidden) > 0 and min(self.hidden) > 0,
                  "value_range": self.value_range is None or (len(self.value_range) == 2
                                                               and self.value_range[0] < self.value_range[1])}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"CQLConfig: invalid {bad} (gamma in [0,1], alpha >= 0, lr > 0, tau in (0,1], "
                             f"hidden non-empty positive sizes, value_range [low, high] with low < high); got {asdict(self)}")


class QNetwork(nn.Module):
    """Q-values of every action from a flat observation (the goal is part of it)."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_actions))
        self.net = nn.Sequential(*layers)
        self.obs_dim, self.num_actions = obs_dim, num_actions

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)


def cql_regulariser(q_all: Tensor, action: Tensor) -> Tensor:
    """Per-sample CQL(H) term: logsumexp over actions of Q(s, .) minus Q(s, a_data)."""
    return torch.logsumexp(q_all, dim=-1) - q_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)


def td_targets(reward: Tensor, terminated: Tensor, q_next_online: Tensor, q_next_target: Tensor, gamma: float,
               double_q: bool = True) -> Tensor:
    """r + gamma * (1 - terminated) * Q_target(s', a'), a' = argmax of the online (double Q) or target net."""
    chooser = q_next_online if double_q else q_next_target
    best = chooser.argmax(dim=-1, keepdim=True)
    bootstrap = q_next_target.gather(-1, best).squeeze(-1)
    return reward + gamma * (1.0 - terminated.float()) * bootstrap


@dataclass
class CQLBatch:
    """A minibatch as tensors (``weight``: optional per-sample loss weight)."""

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    weight: Tensor | None = None

    @classmethod
    def from_numpy(cls, device: str | torch.device = "cpu", **arrays: np.ndarray) -> CQLBatch:
        t = {k: torch.as_tensor(v, device=device) for k, v in arrays.items() if v is not None}
        return cls(obs=t["obs"].float(), action=t["action"].long(), reward=t["reward"].float(),
                   next_obs=t["next_obs"].float(), terminated=t["terminated"].bool(),
                   weight=t["weight"].float() if "weight" in t else None)


def cql_update(q: nn.Module, target: nn.Module, optimizer: torch.optim.Optimizer, batch: CQLBatch,
               config: CQLConfig) -> dict[str, float]:
    """One gradient step of CQL on ``batch``, then a Polyak step of ``target``; returns the losses."""
    with torch.no_grad():
        q_next_target = target(batch.next_obs)
        q_next_online = q(batch.next_obs) if config.double_q else q_next_target
        y = td_targets(batch.reward, batch.terminated, q_next_online, q_next_target, config.gamma, config.double_q)
        if config.value_range is not None:
            y = y.clamp(*config.value_range)
    q_all = q(batch.obs)
    q_data = q_all.gather(-1, batch.action.unsqueeze(-1)).squeeze(-1)
    td = F.smooth_l1_loss(q_data, y, reduction="none")
    reg = cql_regulariser(q_all, batch.action)
    weight = batch.weight if batch.weight is not None else torch.ones_like(td)
    norm = weight.sum().clamp_min(1e-8)
    td_loss = (weight * td).sum() / norm
    reg_loss = (weight * reg).sum() / norm
    loss = td_loss + config.alpha * reg_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(q.parameters(), config.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        for p, tp in zip(q.parameters(), target.parameters()):
            tp.lerp_(p, config.tau)
    return {"loss": float(loss.detach()), "td_loss": float(td_loss.detach()),
            "cql_regulariser": float(reg_loss.detach()), "q_data_mean": float(q_data.detach().mean())}


@dataclass
class DiscreteCQL:
    """A Q-network, its target and optimizer, with helpers to update, value and act."""

    obs_dim: int
    num_actions: int
    config: CQLConfig = field(default_factory=CQLConfig)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        torch.manual_seed(self.seed)
        self.q = QNetwork(self.obs_dim, self.num_actions, self.config.hidden).to(self.device)
        self.target = QNetwork(self.obs_dim, self.num_actions, self.config.hidden).to(self.device)
        self.target.load_state_dict(self.q.state_dict())
        self.target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=self.config.lr)

    def update(self, batch: CQLBatch) -> dict[str, float]:
        return cql_update(self.q, self.target, self.optimizer, batch, self.config)

    @torch.no_grad()
    def q_values(self, obs: np.ndarray | Tensor, action: np.ndarray | Tensor | None = None) -> np.ndarray:
        """Q(s, .) [N, A], or Q(s, a) [N] when ``action`` is given."""
        q_all = self.q(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        if action is not None:
            q_all = q_all.gather(-1, torch.as_tensor(action, device=self.device).long().unsqueeze(-1)).squeeze(-1)
        return q_all.cpu().numpy()

    @torch.no_grad()
    def forward_inference(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """RLlib-style inference call: Q-values as the action-distribution inputs (argmax = greedy action)."""
        return {"action_dist_inputs": self.q(torch.as_tensor(batch["obs"], dtype=torch.float32, device=self.device)).cpu()}

    def save(self, path: str | Path) -> Path:
        """Networks, optimizer and config in one file (what `load` and a resumed run read back)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"obs_dim": self.obs_dim, "num_actions": self.num_actions, "config": asdict(self.config),
                    "q": self.q.state_dict(), "target": self.target.state_dict(),
                    "optimizer": self.optimizer.state_dict()}, tmp)
        tmp.replace(path)  # atomic: a crash mid-save leaves the previous checkpoint intact
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> DiscreteCQL:
        """A saved agent, optimizer state included when the file has it (files before resume support do not)."""
        state = torch.load(path, map_location=device, weights_only=True)
        config = state["config"]
        config["hidden"] = tuple(config["hidden"])
        if config.get("value_range") is not None:
            config["value_range"] = tuple(config["value_range"])
        agent = cls(state["obs_dim"], state["num_actions"], CQLConfig(**config), device=device)
        agent.q.load_state_dict(state["q"])
        agent.target.load_state_dict(state["target"])
        if "optimizer" in state:
            agent.optimizer.load_state_dict(state["optimizer"])
        return agent


__all__ = ["CQLBatch", "CQLConfig", "DiscreteCQL", "QNetwork", "cql_regulariser", "cql_update", "td_targets"]
