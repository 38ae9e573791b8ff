"""The TAG lookahead on a multi-task network's shared parameters (torch; no Ray).

For each source task i: one SGD step ``theta_s -= lr * grad_s L_i`` on the shared
parameters only, every task's loss re-evaluated on the same batch, parameters
restored.  Turn the numbers into affinities with ``curricula.affinity``
(``TaskAffinity.update(before, after)``).  Works wherever per-task losses can be
recomputed by a closure: the supervised loop (a forward pass over the batch)
and an RLlib learner (per-task PPO losses on the train batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor


def lookahead_losses(
    shared_parameters: Sequence[Tensor],
    task_losses: Sequence[Tensor | None],
    recompute_task_losses: Callable[[], Sequence[Tensor | None]],
    lr: float,
    allreduce: Callable[[Tensor], Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(before [T], after [T x T]): losses before any step, and after a step on each source task.

    ``task_losses``: the batch's per-task losses with their graph (None for an absent
    task); the graph is kept (``retain_graph``), so the caller can still backpropagate
    them for its own update.  ``recompute_task_losses()`` evaluates the same batch
    again (it runs under ``torch.no_grad``).  Absent tasks give nan rows/columns.
    ``allreduce(buffer)`` (data-parallel): the mean over workers of the loss numbers;
    each worker looks ahead with its own shard's gradient.
    """
    if not (lr > 0):
        raise ValueError(f"lr must be positive, got {lr!r}")
    shared = [p for p in shared_parameters if p.requires_grad]
    num_tasks = len(task_losses)
    device = shared[0].device if shared else torch.device("cpu")
    numbers = torch.full((num_tasks + 1, num_tasks), float("nan"), dtype=torch.float64, device=device)
    for j, loss in enumerate(task_losses):
        if loss is not None:
            numbers[0, j] = loss.detach().double()
    saved = [p.detach().clone() for p in shared]
    try:
        for i, loss in enumerate(task_losses):
            if loss is None or not loss.requires_grad:
                continue
            grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(shared, grads):
                    if g is not None:
                        p.sub_(lr * g)
                after = recompute_task_losses()
                for j, value in enumerate(after):
                    if value is not None:
                        numbers[1 + i, j] = value.detach().double()
                for p, s in zip(shared, saved):
                    p.copy_(s)
    finally:
        with torch.no_grad():  # never leave a lookahead step behind, even on error
            for p, s in zip(shared, saved):
                p.copy_(s)
    if allreduce is not None:
        numbers = allreduce(numbers)
    out = numbers.cpu().numpy()
    return out[0], out[1:]
