"""The combiner contract: a [T x P] per-task gradient matrix (+ losses) -> one [P] gradient."""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import Tensor


class GradientCombiner(abc.ABC):
    """Turns per-task gradients on the shared parameters into one update direction.

    ``grads[t]`` is task t's gradient (already averaged over data-parallel
    workers by the caller); ``losses[t]`` its loss value; ``task_ids`` says
    which of the combiner's ``num_tasks`` tasks the rows are, when some tasks
    had no samples in the batch (default: rows are tasks 0..T-1).
    ``last_weights`` holds the per-task weights of the last call when the
    result is a weighted sum of the rows (None otherwise), for logging.
    """

    name: str = ""

    def __init__(self, num_tasks: int) -> None:
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
        self.num_tasks = num_tasks
        self.last_weights: Tensor | None = None

    def __call__(self, grads: Tensor, losses: Tensor | None = None, task_ids: Tensor | None = None) -> Tensor:
        if grads.dim() != 2:
            raise ValueError(f"grads must be a [tasks x params] matrix, got shape {tuple(grads.shape)}")
        if task_ids is None:
            if grads.shape[0] != self.num_tasks:
                raise ValueError(
                    f"grads has {grads.shape[0]} rows but the combiner was built for num_tasks={self.num_tasks}; "
                    "pass task_ids when only some tasks are present"
                )
            task_ids = torch.arange(self.num_tasks)
        task_ids = torch.as_tensor(task_ids, dtype=torch.long).cpu()
        if task_ids.numel() != grads.shape[0]:
            raise ValueError(f"task_ids has {task_ids.numel()} entries for {grads.shape[0]} gradient rows")
        if losses is not None:
            losses = torch.as_tensor(losses).detach().reshape(-1)
            if losses.numel() != grads.shape[0]:
                raise ValueError(f"losses has {losses.numel()} entries for {grads.shape[0]} gradient rows")
        return self.combine(grads, losses, task_ids)

    @abc.abstractmethod
    def combine(self, grads: Tensor, losses: Tensor | None, task_ids: Tensor) -> Tensor:
        """The method itself, on validated input."""

    def state_dict(self) -> dict[str, Any]:
        """Picklable state (rng, phase ...) for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


SMALL_GRAM = 1 << 16  # T * P below this: numpy on one thread beats torch's thread pool


def gram_matrix(grads: Tensor) -> Tensor:
    """G G^T in float64 on the CPU: every combiner below works on these T x T numbers."""
    if grads.device.type == "cpu" and grads.numel() <= SMALL_GRAM:
        # A tiny torch matmul with >1 intra-op thread measured 1-5 ms on a busy
        # 2-core machine (thread wake-ups) against microseconds in numpy.
        g = grads.detach().double().numpy()
        return torch.from_numpy(g @ g.T)
    return (grads @ grads.T).double().cpu()


def weighted_sum(weights: Tensor, grads: Tensor) -> Tensor:
    """sum_t weights[t] grads[t], in the gradients' dtype and device."""
    return weights.to(device=grads.device, dtype=grads.dtype) @ grads
