"""Multi-task networks and gradient combiners inside RLlib's PPO (new API stack).

`MultiTaskPPOModule` puts any `policies` architecture behind RLlib's RLModule API: the
task id is read from the observation's one-hot prefix, and one network output column
beyond the action logits is the value estimate, so every part of the network is
shared or task-specific exactly as the architecture says.

`MultiTaskPPOLearner` splits each minibatch by task id, computes RLlib's own PPO loss
per task (through its loss mask) and lets the configured combiner (sum, PCGrad, MGDA,
Pareto MTL) turn the per-task gradients into one update; RLlib's optimizer and
data-parallel learner group do the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from policies import apply_multitask_backward, build_combiner, build_network


class MultiTaskPPOModule(TorchRLModule, ValueFunctionAPI):
    """RLModule whose network is a `policies` multi-task architecture conditioned on the task id."""

    def setup(self) -> None:
        cfg = self.model_config
        self.num_tasks = int(cfg["num_tasks"])
        self.num_actions = int(self.action_space.n)
        obs_dim = int(np.prod(self.observation_space.shape))
        self.network = build_network(
            cfg["architecture"],
            input_dim=obs_dim,
            output_dim=self.num_actions + 1,
            num_tasks=self.num_tasks,
            hidden=tuple(cfg["hidden"]),
            **dict(cfg.get("architecture_params") or {}),
        )

    def task_ids(self, obs: torch.Tensor) -> torch.Tensor:
        """Task index of each observation (its one-hot goal prefix)."""
        return obs[:, : self.num_tasks].argmax(dim=-1)

    def _heads(self, batch: dict[str, Any]) -> torch.Tensor:
        obs = batch[Columns.OBS].float()
        return self.network(obs, self.task_ids(obs))

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = self._heads(batch)
        return {Columns.ACTION_DIST_INPUTS: out[:, : self.num_actions], Columns.EMBEDDINGS: out[:, self.num_actions]}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is None:
            return self._heads(batch)[:, self.num_actions]
        return embeddings


class MultiTaskPPOLearner(PPOTorchLearner):
    """PPO with per-task losses combined by a gradient combiner over the shared parameters."""

    def build(self) -> None:
        super().build()
        cfg = self.config.learner_config_dict
        self._combiner = build_combiner(cfg["combiner"], int(cfg["num_tasks"]), **dict(cfg.get("combiner_params") or {}))
        self._num_tasks = int(cfg["num_tasks"])
        self._task_losses: dict[str, list[torch.Tensor | None]] = {}

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        obs = batch[Columns.OBS]
        task = obs[:, : self._num_tasks].argmax(dim=-1)
        base_mask = batch.get(Columns.LOSS_MASK)
        losses = []
        for t in range(self._num_tasks):
            mask = task == t
            if base_mask is not None:
                mask = mask & base_mask
            if not bool(mask.any()):
                # No samples of this task in the minibatch: left out of the combination.
                losses.append(None)
                continue
            losses.append(
                super().compute_loss_for_module(
                    module_id=module_id, config=config, batch={**batch, Columns.LOSS_MASK: mask}, fwd_out=fwd_out
                )
            )
        self._task_losses[module_id] = losses
        return torch.stack([loss for loss in losses if loss is not None]).sum()

    def compute_gradients(self, loss_per_module, **kwargs):
        for optim in self._optimizer_parameters:
            optim.zero_grad(set_to_none=True)
        for module_id, losses in self._task_losses.items():
            apply_multitask_backward(self.module[module_id].network, losses, self._combiner)
        self._task_losses = {}
        return {pid: p.grad for pid, p in self._params.items() if p.grad is not None}


def multitask_rl_module_spec(architecture: str, hidden, num_tasks: int, architecture_params: dict | None = None):
    """The `RLModuleSpec` for `MultiTaskPPOModule`."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    return RLModuleSpec(
        module_class=MultiTaskPPOModule,
        model_config={
            "architecture": architecture,
            "hidden": list(hidden),
            "num_tasks": num_tasks,
            "architecture_params": dict(architecture_params or {}),
        },
    )
