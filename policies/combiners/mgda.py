"""MGDA (Desideri 2012; Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization").

    a* = argmin_{a in simplex} || sum_t a_t g_t ||^2      (exact closed form for T = 2)
    d  = sum_t a*_t g_t

d is a descent direction for every task at once; d = 0 means Pareto
stationary.  Optional gradient normalisation as in Sener & Koltun (sec. 3.3 of
their code): "l2" (g/||g||), "loss" (g/L), "loss+" (g/(L ||g||)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from policies.combiners.base import GradientCombiner, gram_matrix, weighted_sum
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
        gram = gram_matrix(grads)
        scale = torch.ones(grads.shape[0], dtype=torch.float64)
        if self.normalization in ("l2", "loss+"):
            scale = scale / gram.diagonal().clamp_min(1e-30).sqrt()
        if self.normalization in ("loss", "loss+"):
            if losses is None:
                raise ValueError(f"normalization={self.normalization!r} needs the task losses")
            scale = scale / losses.double().cpu().abs().clamp_min(1e-12)
        alpha = min_norm_weights(gram * scale[:, None] * scale[None, :])
        self.last_weights = alpha * scale  # weights on the raw gradients
        return weighted_sum(self.last_weights, grads)
