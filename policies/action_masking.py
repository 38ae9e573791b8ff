"""Invalid-action masking for discrete policies (torch only, no Ray).

The environment reports which actions would do something (``action_mask``: 1 valid, 0 not;
float or bool, the shape of the logits or broadcastable to it); :func:`mask_logits` puts
the most negative finite value of the logits' dtype on the rest, so a ``Categorical`` built
from the result gives them probability exactly 0 and never samples them, while log-probs,
entropy and gradients stay finite (no ``-inf``, so no ``0 * -inf = NaN`` in the entropy).

Rule for a row with no valid action at all (which the Simon Says env never reports, as
``explore`` is always valid): the row is left unmasked, i.e. the policy's own distribution,
rather than a degenerate or NaN one.
"""

from __future__ import annotations

import torch


def mask_logits(logits: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """``logits`` with ``torch.finfo(logits.dtype).min`` where ``action_mask`` is 0.

    ``action_mask`` > 0.5 (or ``True``) marks a valid action. Rows (last dimension) where
    no action is valid are returned unchanged. Gradients flow to the valid logits only.
    """
    if not torch.is_floating_point(logits):
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    valid = action_mask if action_mask.dtype == torch.bool else action_mask > 0.5
    valid = valid.to(device=logits.device, dtype=logits.dtype)
    # Arithmetic instead of torch.where / bool .any(): the same values (valid logits unchanged,
    # the rest exactly finfo.min, gradient exactly 0 there), at 1 ms instead of 7 ms forward +
    # backward on a 2,048 x 213 minibatch on one CPU thread.
    keep = torch.maximum(valid, 1.0 - valid.amax(dim=-1, keepdim=True))
    return logits * keep + (1.0 - keep) * torch.finfo(logits.dtype).min

__all__ = ["mask_logits"]
