"""Equal weights: the combined gradient is the plain sum of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from policies.combiners.base import GradientCombiner


class SumCombiner(GradientCombiner):
    """d = sum_t g_t (the usual summed multi-task loss)."""

    name = "sum"

    def combine(self, grads: Tensor, losses: Tensor | None, task_ids: Tensor) -> Tensor:
        self.last_weights = torch.ones(grads.shape[0], dtype=torch.float64)
        return grads.sum(dim=0)
