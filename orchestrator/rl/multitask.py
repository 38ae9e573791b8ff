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

import contextlib
import time
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from curricula.affinity import TaskAffinity
from orchestrator.rl.action_masking import MaskedCategorical, flat_observations, masked_logits, unmasked_space
from policies import apply_multitask_backward, build_combiner, build_network
from policies.affinity import lookahead_losses
from policies.backward import torch_distributed_allreduce


DROPPED_NONFINITE = "combiner/dropped_nonfinite"  # learner metric: minibatch updates a task sat out


class MultiTaskPPOModule(TorchRLModule, ValueFunctionAPI):
    """RLModule whose network is a `policies` multi-task architecture conditioned on the task id."""

    def setup(self) -> None:
        cfg = self.model_config
        self.num_tasks = int(cfg["num_tasks"])
        self.num_actions = int(self.action_space.n)
        obs_dim = int(np.prod(unmasked_space(self.observation_space).shape))
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
        obs = flat_observations(batch[Columns.OBS]).float()
        return self.network(obs, self.task_ids(obs))

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out = self._heads(batch)
        logits = masked_logits(out[:, : self.num_actions], batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: out[:, self.num_actions]}

    def no_sync(self):
        """RLlib enters DDP's ``no_sync`` with several learners; `MultiTaskPPOLearner` does its
        own all-reduce and does not wrap this module in DDP, so there is nothing to suspend."""
        return contextlib.nullcontext()

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        if embeddings is None:
            return self._heads(batch)[:, self.num_actions]
        return embeddings

    # The action space is Discrete; the masked logits' fast Categorical (orchestrator.rl.action_masking).
    def get_train_action_dist_cls(self):
        return MaskedCategorical

    def get_exploration_action_dist_cls(self):
        return MaskedCategorical

    def get_inference_action_dist_cls(self):
        return MaskedCategorical


class MultiTaskPPOLearner(PPOTorchLearner):
    """PPO with per-task losses combined by a gradient combiner over the shared parameters.

    ``learner_config_dict``: ``combiner``, ``combiner_params``, ``num_tasks``; optional
    ``affinity_every`` (minibatch updates between TAG lookahead measurements, 0/None: off),
    ``affinity_lr`` (the lookahead's SGD step, default the PPO lr) and ``task_names``.
    Read the running affinity with ``affinity_state()`` (from the driver:
    ``orchestrator.rl.algorithm.learner_affinity(algo)``).

    With several learners the all-reduce happens here, over the [tasks x params]
    gradient matrix and BEFORE combining (a nonlinear combiner of averaged gradients
    is not the average of combined ones), so RLlib's DDP wrapping is switched off and
    rank 0's initial weights are broadcast instead.
    """

    def build(self) -> None:
        super().build()
        cfg = self.config.learner_config_dict
        self._num_tasks = int(cfg["num_tasks"])
        self._combiner = build_combiner(cfg["combiner"], self._num_tasks, **dict(cfg.get("combiner_params") or {}))
        self._task_losses: dict[str, list[torch.Tensor | None]] = {}
        self._task_batches: dict[str, tuple[Any, dict[str, Any], torch.Tensor]] = {}
        self._updates = 0
        self._affinity_every = int(cfg.get("affinity_every") or 0)
        self._affinity_lr = float(cfg.get("affinity_lr") or self.config.lr)
        names = cfg.get("task_names") or [f"task_{t}" for t in range(self._num_tasks)]
        self._task_names = list(names)
        # PPO's per-task loss is often below zero (surrogate and entropy terms).
        self._affinity = TaskAffinity(names, signed_losses=True) if self._affinity_every else None
        self._affinity_seconds = 0.0

    def _make_modules_ddp_if_necessary(self) -> None:
        if not self.distributed:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for module_id in self.module.keys():
                for tensor in [*self.module[module_id].parameters(), *self.module[module_id].buffers()]:
                    dist.broadcast(tensor.data, src=0)

    def _allreduce(self):
        return torch_distributed_allreduce if self.distributed else None

    def _per_task_losses(self, module_id, config, batch, fwd_out, task: torch.Tensor) -> list[torch.Tensor | None]:
        """RLlib's own PPO loss on each task's rows (None where the task has no rows)."""
        base_mask = batch.get(Columns.LOSS_MASK)
        losses: list[torch.Tensor | None] = []
        for t in range(self._num_tasks):
            mask = task == t
            if base_mask is not None:
                mask = mask & base_mask
            if not bool(mask.any()):
                losses.append(None)  # no samples of this task in the minibatch: left out of the combination
                continue
            losses.append(
                super().compute_loss_for_module(
                    module_id=module_id, config=config, batch={**batch, Columns.LOSS_MASK: mask}, fwd_out=fwd_out
                )
            )
        return losses

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        task = flat_observations(batch[Columns.OBS])[:, : self._num_tasks].argmax(dim=-1)
        losses = self._per_task_losses(module_id, config, batch, fwd_out, task)
        self._task_losses[module_id] = losses
        self._task_batches[module_id] = (config, batch, task)
        present = [loss for loss in losses if loss is not None]
        if not present:  # only padding rows: nothing to learn from
            return fwd_out[Columns.ACTION_DIST_INPUTS].sum() * 0.0
        return torch.stack(present).sum()

    def compute_gradients(self, loss_per_module, **kwargs):
        for optim in self._optimizer_parameters:
            optim.zero_grad(set_to_none=True)
        allreduce = self._allreduce()
        measure = self._affinity is not None and self._updates % self._affinity_every == 0
        for module_id, losses in self._task_losses.items():
            network = self.module[module_id].unwrapped().network
            config, batch, task = self._task_batches[module_id]
            base_mask = batch.get(Columns.LOSS_MASK)
            counts = torch.bincount(task if base_mask is None else task[base_mask], minlength=self._num_tasks)
            if measure:
                self._measure_affinity(module_id, network, losses, allreduce)
            stats = apply_multitask_backward(network, losses, self._combiner, allreduce=allreduce,
                                             task_sample_counts=counts)
            for t in stats.dropped_nonfinite_tasks:  # a task whose loss or gradient overflowed sat this step out
                self.metrics.log_value((module_id, f"{DROPPED_NONFINITE}/{self._task_names[t]}"), 1,
                                       reduce="lifetime_sum")
        self._updates += 1
        self._task_losses, self._task_batches = {}, {}
        return {pid: p.grad for pid, p in self._params.items() if p.grad is not None}

    def _measure_affinity(self, module_id, network, losses, allreduce) -> None:
        """TAG lookahead on the shared parameters with this minibatch's per-task PPO losses."""
        started = time.perf_counter()
        config, batch, task = self._task_batches[module_id]
        module = self.module[module_id]

        def recompute() -> list[torch.Tensor | None]:
            # The lookahead's forward passes must not show up in the iteration's loss statistics.
            logged, self.metrics = self.metrics, MetricsLogger(root=False)
            try:
                return self._per_task_losses(module_id, config, batch, module.forward_train(batch), task)
            finally:
                self.metrics = logged

        before, after = lookahead_losses(network.shared_parameters(), losses, recompute, self._affinity_lr, allreduce)
        self._affinity.update(before, after)
        self._affinity_seconds += time.perf_counter() - started

    def affinity_state(self) -> dict[str, Any] | None:
        """The running affinity (``TaskAffinity.state_dict()``), its mean matrix and the seconds spent."""
        if self._affinity is None:
            return None
        return {**self._affinity.state_dict(), "matrix": self._affinity.matrix().tolist(),
                "seconds": self._affinity_seconds, "updates": self._updates}


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
