"""Equal weights: the combined gradient is the plain sum of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from policies.combiners.base import GradientCombiner


class SumCombiner(GradientCombiner):
    """d = sum_t g_t (the usual summed multi-task loss), over the rows with finite values.

    No host sync on an accelerator: the rows with a non-finite gradient or loss
    are masked out on the device, and ``last_weights`` / ``last_usable`` stay
    there (1/0 and True/False per row).  On the CPU the plain sum is taken
    first and the mask only computed when that sum is not finite.
    """

    name = "sum"

    def combine(self, grads: Tensor, losses: Tensor | None, task_ids: Tensor) -> Tensor:
        if grads.device.type == "cpu":
            total = grads.sum(dim=0)
            finite_losses = losses is None or bool(torch.isfinite(losses).all())
            # sum(total) is finite unless an entry is not (or it overflows): a cheap screen.
            if finite_losses and (bool(torch.isfinite(total.sum())) or bool(torch.isfinite(total).all())):
                self.last_usable = torch.ones(grads.shape[0], dtype=torch.bool)
                self.last_weights = torch.ones(grads.shape[0], dtype=torch.float64)
                return total
        usable = torch.isfinite(grads).all(dim=1)
        if losses is not None:
            usable &= torch.isfinite(losses.to(usable.device))
        self.last_usable = usable
        self.last_weights = usable.to(torch.float64)
        return torch.where(usable[:, None], grads, torch.zeros((), dtype=grads.dtype, device=grads.device)).sum(dim=0)
