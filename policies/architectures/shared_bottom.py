"""SharedBottom: one trunk for all tasks, one linear head per task (hard parameter sharing)."""

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


class SharedBottom(MultiTaskNetwork):
    """Shared trunk ``hidden`` -> per-task ``Linear(features, output_dim)``.

    Counts (MLP, norm on): shared = sum_l (h_{l-1} h_l + 3 h_l),
    task_specific = T (h_L * output_dim + output_dim).
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
        self.trunk = nn.Sequential(*make_trunk(self.input_dim, hidden, norm))
        features = trunk_feature_dim(self.input_dim, hidden)
        self.task_specific = nn.ModuleList(nn.Linear(features, output_dim) for _ in range(num_tasks))

    def forward(self, x: Tensor, task: Tensor) -> Tensor:
        self.check_task(x, task)
        h = flatten_features(self.trunk(shape_input(x, self.input_dim)))
        return route_by_task(h, task, self.task_specific)
