"""Independent: one full network per task, nothing shared (the reference point)."""

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


class _TaskNetwork(nn.Module):
    def __init__(self, input_dim: InputDim, output_dim: int, hidden: Sequence[int], norm: bool) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*make_trunk(input_dim, hidden, norm))
        self.head = nn.Linear(trunk_feature_dim(input_dim, hidden), output_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(flatten_features(self.trunk(x)))


class Independent(MultiTaskNetwork):
    """T copies of trunk + head; ``shared`` count is 0."""

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
        self.task_specific = nn.ModuleList(
            _TaskNetwork(self.input_dim, output_dim, tuple(hidden), norm) for _ in range(num_tasks)
        )

    def forward(self, x: Tensor, task: Tensor) -> Tensor:
        self.check_task(x, task)
        return route_by_task(shape_input(x, self.input_dim), task, self.task_specific)
