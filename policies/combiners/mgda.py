"""MGDA (Desideri 2012; Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization").

    a* = argmin_{a in simplex} || sum_t a_t g_t ||^2      (exact closed form for T = 2)
    d  = sum_t a*_t g_t

d is a descent direction for every task at once; d = 0 means Pareto
stationary.  Optional gradient normalisation as in Sener & Koltun (sec. 3.3 of
their code): "l2" (g/||g||), "loss" (g/L), "loss+" (g/(L ||g||)).

Rows with a non-finite gradient or loss are left out of the step (weight 0).
A zero gradient is left as it is by "l2" (it has no direction); a loss below
eps times the largest loss is raised to that floor by "loss" (relative, so a
task at exactly 0 loss gets a tiny weight instead of a division by zero).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from policies.combiners.base import GradientCombiner, gram_info, weighted_sum
from policies.combiners.min_norm import min_norm_weights

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


class MGDA(GradientCombiner):
    """Min-norm point of the convex hull of the task gradients."""

    name = "mgda"

    def __init__(self, num_tasks: int, normalization: str = "none") -> None:
        super().__init__(num_tasks)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; valid choices: {list(NORMALIZATIONS)}")
        self.normalization = normalization

    def combine(self, grads: Tensor, losses: Tensor | None, task_ids: Tensor) -> Tensor:
        if self.normalization in ("loss", "loss+") and losses is None:
            raise ValueError(f"normalization={self.normalization!r} needs the task losses")
        info = gram_info(grads, losses)
        ids = info.usable_ids
        weights = np.zeros(grads.shape[0])
        if ids.size:
            gram = info.gram[np.ix_(ids, ids)]  # normalised: the largest norm is 1
            scale = np.ones(ids.size)  # vector t enters the hull as scale[t] * g_t / info.scale
            if self.normalization in ("l2", "loss+"):
                norms = np.sqrt(np.maximum(np.diagonal(gram), 0.0))
                scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)
            if self.normalization in ("loss", "loss+"):
                magnitude = np.abs(info.losses[ids])
                top = float(magnitude.max())
                scale = scale / (np.maximum(magnitude, np.finfo(np.float64).eps * top) if top > 0 else 1.0)
            alpha = min_norm_weights(gram * scale[:, None] * scale[None, :]).numpy()
            # Weights on the raw gradients; "none" is scale-free, the others divide by ||g|| or L.
            weights[ids] = alpha * scale / (info.scale if self.normalization in ("l2", "loss+") else 1.0)
        combined, self.last_weights = weighted_sum(weights, grads, info.usable, info.row_norms)
        self.last_usable = torch.as_tensor(info.usable)
        return combined
