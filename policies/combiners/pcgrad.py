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
Rows with a non-finite gradient (or loss) are left out of the step; the Gram
matrix is normalised (largest norm 1), so the loop is the same at any scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from policies.combiners.base import GradientCombiner, gram_info, weighted_sum


class PCGrad(GradientCombiner):
    """Project each task's gradient off the others' where they conflict, in random order."""

    name = "pcgrad"

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.rng = torch.Generator().manual_seed(int(seed))

    def combine(self, grads: Tensor, losses: Tensor | None, task_ids: Tensor) -> Tensor:
        info = gram_info(grads, losses)
        ids = info.usable_ids
        gram = info.gram[np.ix_(ids, ids)]
        t = ids.size
        coef = np.eye(t)  # row i: g_i^PC in the basis of the usable g_1..g_t
        for i in range(t):
            for j in torch.randperm(t, generator=self.rng).tolist():
                if j == i or gram[j, j] <= 0:  # exactly 0 only for a zero row: nothing to project on
                    continue
                dot = coef[i] @ gram[:, j]  # g_i^PC . g_j
                if dot < 0:
                    coef[i, j] -= dot / gram[j, j]
        weights = np.zeros(grads.shape[0])
        weights[ids] = coef.sum(axis=0)
        combined, self.last_weights = weighted_sum(weights, grads, info.usable, info.row_norms)
        self.last_usable = torch.as_tensor(info.usable)
        return combined

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.set_state(state["rng"])
