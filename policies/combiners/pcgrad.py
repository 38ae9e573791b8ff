"""PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"), Algorithm 1.

    for g_i in G:
        g_i^PC <- g_i
        for g_j in G \\ {g_i}, in random order:
            if g_i^PC . g_j < 0:
                g_i^PC <- g_i^PC - (g_i^PC . g_j) / ||g_j||^2  g_j
    return sum_i g_i^PC

Every g_i^PC stays a linear combination of the original g_j, so the loop runs
on its T coefficients and the Gram matrix G G^T (T x T numbers) and touches
the P-dimensional gradients only twice: once for G G^T, once for the sum.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from policies.combiners.base import GradientCombiner, gram_matrix, weighted_sum


class PCGrad(GradientCombiner):
    """Project each task's gradient off the others' where they conflict, in random order."""

    name = "pcgrad"

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.rng = torch.Generator().manual_seed(int(seed))

    def combine(self, grads: Tensor, losses: Tensor | None, task_ids: Tensor) -> Tensor:
        gram = gram_matrix(grads)
        t = grads.shape[0]
        coef = torch.eye(t, dtype=torch.float64)  # row i: g_i^PC in the basis g_1..g_T
        for i in range(t):
            for j in torch.randperm(t, generator=self.rng).tolist():
                if j == i or gram[j, j] <= 0:
                    continue
                dot = coef[i] @ gram[:, j]  # g_i^PC . g_j
                if dot < 0:
                    coef[i, j] -= dot / gram[j, j]
        self.last_weights = coef.sum(dim=0)
        return weighted_sum(self.last_weights, grads)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.set_state(state["rng"])
