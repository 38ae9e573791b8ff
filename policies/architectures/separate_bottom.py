"""SeparateBottom: task-specific bottom layers, a shared top, per-task heads.

"Rethinking hard parameter sharing" found that sharing the *top* and keeping
the bottom task-specific often beats the usual shared bottom; the knob
``num_task_specific_layers`` says how many bottom trunk layers each task owns
(0 = SharedBottom, len(hidden) = nothing shared but nothing either)."""

from __future__ import annotations

from collections.abc import Sequence

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


class SeparateBottom(MultiTaskNetwork):
    """Per-task bottom ``hidden[:k]`` -> shared ``hidden[k:]`` -> per-task head."""

    def __init__(
        self,
        input_dim: InputDim,
        output_dim: int,
        num_tasks: int,
        hidden: Sequence[int] = (64, 64),
        num_task_specific_layers: int = 1,
        norm: bool = True,
    ) -> None:
        super().__init__(num_tasks)
        hidden = tuple(hidden)
        k = num_task_specific_layers
        if not isinstance(k, int) or not 0 <= k <= len(hidden):
            raise ValueError(
                f"num_task_specific_layers must be an int in [0, len(hidden)={len(hidden)}], got {k!r}"
            )
        self.input_dim = validate_input_dim(input_dim)
        self.num_task_specific_layers = k
        features = trunk_feature_dim(self.input_dim, hidden)
        self.task_specific = nn.ModuleList()
        for _ in range(num_tasks):
            part = nn.Module()
            part.bottom = nn.Sequential(*make_trunk(self.input_dim, hidden, norm)[:k])
            part.head = nn.Linear(features, output_dim)
            self.task_specific.append(part)
        # The shared top is the same trunk's upper layers; building the whole
        # trunk and dropping the bottom keeps widths consistent.
        self.top = nn.Sequential(*make_trunk(self.input_dim, hidden, norm)[k:])

    def forward(self, x: Tensor, task: Tensor) -> Tensor:
        self.check_task(x, task)
        x = shape_input(x, self.input_dim)
        h = route_by_task(x, task, [part.bottom for part in self.task_specific])
        h = flatten_features(self.top(h))
        return route_by_task(h, task, [part.head for part in self.task_specific])
