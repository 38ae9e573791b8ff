"""SoftModular: layers of modules mixed by a routing network (Yang et al. 2020,
"Multi-Task Reinforcement Learning with Soft Modularization").

The state embedding f(s) and a task embedding g(z) meet as an elementwise
product; routing layer l turns it (and the previous routing weights) into
softmax weights p^l[j, i]: how much module i of layer l-1 feeds module j of
layer l.  The modules are shared; only the task embedding is task-specific.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from policies.architectures.base import (
    InputDim,
    MultiTaskNetwork,
    flatten_features,
    make_trunk,
    shape_input,
    trunk_feature_dim,
    validate_input_dim,
)


class TaskEmbedding(nn.Module):
    """g(z) for one task: a learned D-vector (a row of the one-hot-times-matrix embedding)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.vector = nn.Parameter(torch.randn(width) / width**0.5)


class SoftModular(MultiTaskNetwork):
    """State encoder ``hidden`` -> D, ``num_layers`` layers of ``num_modules`` D x D modules.

    Counts, with n = num_modules, L = num_layers, F = encoder feature width:
    shared = encoder + (F D + D) + L n (D^2 + D) + (D n^2 + n^2)
             + (L - 2) (n^2 D + D + D n^2 + n^2) + (D out + out);
    task_specific = T D.
    """

    def __init__(
        self,
        input_dim: InputDim,
        output_dim: int,
        num_tasks: int,
        hidden: Sequence[int] = (64, 64),
        num_layers: int = 2,
        num_modules: int = 4,
        module_width: int | None = None,
        norm: bool = True,
    ) -> None:
        super().__init__(num_tasks)
        if not isinstance(num_layers, int) or num_layers < 2:
            raise ValueError(f"num_layers must be an int >= 2 (routing needs two module layers), got {num_layers!r}")
        if not isinstance(num_modules, int) or num_modules < 1:
            raise ValueError(f"num_modules must be a positive int, got {num_modules!r}")
        self.input_dim = validate_input_dim(input_dim)
        hidden = tuple(hidden)
        width = int(module_width or (hidden[-1] if hidden else 64))
        self.width, self.num_modules, self.num_layers = width, num_modules, num_layers
        self.encoder = nn.Sequential(*make_trunk(self.input_dim, hidden, norm))
        self.project = nn.Linear(trunk_feature_dim(self.input_dim, hidden), width)
        self.task_specific = nn.ModuleList(TaskEmbedding(width) for _ in range(num_tasks))
        n2 = num_modules * num_modules
        # Module layer l: n independent D x D linear maps, stored stacked for one einsum.
        self.module_weight = nn.ParameterList(
            nn.Parameter(torch.randn(num_modules, width, width) / width**0.5) for _ in range(num_layers)
        )
        self.module_bias = nn.ParameterList(
            nn.Parameter(torch.zeros(num_modules, width)) for _ in range(num_layers)
        )
        # Routing: W_d maps the embedding to n x n logits; W_u lifts the previous
        # routing weights back to D so each routing layer sees the one before it.
        self.route_down = nn.ModuleList(nn.Linear(width, n2) for _ in range(num_layers - 1))
        self.route_up = nn.ModuleList(nn.Linear(n2, width) for _ in range(num_layers - 2))
        self.head = nn.Linear(width, output_dim)

    def routing_weights(self, embedding: Tensor) -> list[Tensor]:
        """Softmax routing matrices p^l [B, n, n] (rows: output module j, cols: input module i)."""
        n = self.num_modules
        weights = []
        logits = self.route_down[0](torch.relu(embedding))
        for layer in range(self.num_layers - 1):
            if layer > 0:
                lifted = self.route_up[layer - 1](weights[-1].flatten(1))
                logits = self.route_down[layer](torch.relu(lifted * embedding))
            weights.append(torch.softmax(logits.view(-1, n, n), dim=-1))
        return weights

    def forward(self, x: Tensor, task: Tensor) -> Tensor:
        self.check_task(x, task)
        state = torch.relu(self.project(flatten_features(self.encoder(shape_input(x, self.input_dim)))))
        task_embedding = torch.stack([t.vector for t in self.task_specific])[task]
        routes = self.routing_weights(state * task_embedding)
        # Layer 0: every module reads the state embedding.
        h = torch.einsum("bd,nde->bne", state, self.module_weight[0]) + self.module_bias[0]
        for layer in range(1, self.num_layers):
            h = torch.relu(h)
            mixed = torch.einsum("bji,bid->bjd", routes[layer - 1], h)
            h = torch.einsum("bjd,jde->bje", mixed, self.module_weight[layer]) + self.module_bias[layer]
        return self.head(torch.relu(h).mean(dim=1))
