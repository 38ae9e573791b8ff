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
    # Every source task's gradient first, while the parameters are untouched.
    grads: dict[int, tuple[Tensor | None, ...]] = {}
    for i, loss in enumerate(task_losses):
        if loss is not None and loss.requires_grad:
            grads[i] = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
    # Steps go through ``.data``: the caller's graph saved these parameters, and an
    # in-place change through autograd would bump their version and void that graph
    # even though the values are restored exactly.
    saved = [p.data.clone() for p in shared]
    try:
        with torch.no_grad():
            for i, task_grads in grads.items():
                for p, g in zip(shared, task_grads):
                    if g is not None:
                        p.data.sub_(lr * g)
                for j, value in enumerate(recompute_task_losses()):
                    if value is not None:
                        numbers[1 + i, j] = value.detach().double()
                for p, s in zip(shared, saved):
                    p.data.copy_(s)
    finally:
        for p, s in zip(shared, saved):  # never leave a lookahead step behind, even on error
            p.data.copy_(s)
    if allreduce is not None:
        numbers = allreduce(numbers)
    out = numbers.cpu().numpy()
    return out[0], out[1:]
