"""ModelPatch: one shared network plus a small per-task patch ("K for the price of 1").

Each task owns, for every trunk layer, a per-channel scale and bias applied
after the layer's normalisation (or after the linear layer when norm is off),
a 3x3 depthwise convolution on conv trunks (added as a residual, zero at
start, so a fresh patch leaves the shared network unchanged), and its own
output head.  ``freeze_shared()`` stops the shared part from training so a new
task (``add_task()``) is learned by its patch alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from policies.architectures.base import (
    InputDim,
    MultiTaskNetwork,
    flatten_features,
    make_trunk,
    route_by_task,
    shape_input,
    trunk_feature_dim,
    validate_input_dim,
)


class TaskPatch(nn.Module):
    """One task's patch: scales, biases (and depthwise kernels) per trunk layer, plus its head."""

    def __init__(self, widths: Sequence[int], conv: bool, features: int, output_dim: int) -> None:
        super().__init__()
        self.scales = nn.ParameterList(nn.Parameter(torch.ones(w)) for w in widths)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(w)) for w in widths)
        self.depthwise = nn.ParameterList(
            nn.Parameter(torch.zeros(w, 1, 3, 3)) for w in (widths if conv else ())
        )
        self.head = nn.Linear(features, output_dim)


class ModelPatch(MultiTaskNetwork):
    """Shared trunk, per-task scale/bias (+ depthwise) patches and heads.

    Counts: shared = the SharedBottom trunk; task_specific per task =
    sum_l 2 h_l (+ 9 h_l on conv trunks) + head.
    """

    def __init__(
        self,
        input_dim: InputDim,
        output_dim: int,
        num_tasks: int,
        hidden: Sequence[int] = (64, 64),
        norm: bool = True,
    ) -> None:
        super().__init__(num_tasks)
        self.input_dim = validate_input_dim(input_dim)
        self.hidden = tuple(hidden)
        self.conv = isinstance(self.input_dim, tuple)
        self.output_dim = output_dim
        self.blocks = nn.ModuleList(make_trunk(self.input_dim, self.hidden, norm))
        self.features = trunk_feature_dim(self.input_dim, self.hidden)
        self.task_specific = nn.ModuleList(self._new_patch() for _ in range(num_tasks))

    def _new_patch(self) -> TaskPatch:
        return TaskPatch(self.hidden, self.conv, self.features, self.output_dim)

    def freeze_shared(self) -> None:
        """Stop gradients into the shared network; only patches (and heads) train."""
        for p in self.shared_parameters():
            p.requires_grad_(False)

    def add_task(self) -> int:
        """Append a fresh patch for a new task (transfer); returns its task id."""
        device = next(self.parameters()).device
        self.task_specific.append(self._new_patch().to(device))
        self.num_tasks += 1
        return self.num_tasks - 1

    def forward(self, x: Tensor, task: Tensor) -> Tensor:
        self.check_task(x, task)
        h = shape_input(x, self.input_dim)
        for layer, block in enumerate(self.blocks):
            h = block.norm(block.layer(h))
            # Gather each sample's own task's scale and bias: [B, C] (-> [B, C, 1, 1]).
            scale = torch.stack([p.scales[layer] for p in self.task_specific])[task]
            bias = torch.stack([p.biases[layer] for p in self.task_specific])[task]
            if self.conv:
                scale, bias = scale[:, :, None, None], bias[:, :, None, None]
            h = h * scale + bias
            if self.conv:
                # Each sample's own task's depthwise kernel, as one grouped conv over
                # B*C channels (no per-task loop): [B, C, 1, 3, 3] -> [B*C, 1, 3, 3].
                b, c, height, width = h.shape
                kernels = torch.stack([p.depthwise[layer] for p in self.task_specific])[task]
                patch = F.conv2d(
                    h.reshape(1, b * c, height, width), kernels.reshape(b * c, 1, 3, 3), padding=1, groups=b * c
                )
                h = h + patch.view(b, c, height, width)
            h = torch.relu(h)
        return route_by_task(flatten_features(h), task, [p.head for p in self.task_specific])
