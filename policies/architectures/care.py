"""CARE: a mixture of encoders combined by attention over a task-metadata embedding
(Sodhani, Zhang and Pineau 2021, "Multi-Task Reinforcement Learning with Context-based
Representations").

Each of k encoders maps the state to a representation; the task's metadata vector (a
sentence describing the task, encoded once: ``tasks.metadata``) goes through a small
context network; a linear layer + softmax on the context gives the attention weights
over the k encoders; the weighted sum of the encoders' outputs, concatenated with the
context, feeds the output layer. Every parameter is shared: tasks differ only by their
(fixed) metadata, which is what lets related tasks share encoders.
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


class CARE(MultiTaskNetwork):
    """``num_encoders`` state encoders ``hidden``, mixed by attention over the task's metadata context.

    ``metadata``: ``[num_tasks, M]`` fixed vectors (a buffer, not trained); None = the one-hot
    task id (CARE without metadata, for shape checks). ``context_width``: width of the
    context network's two layers. Counts (MLP, norm on, F = hidden[-1], C = context_width):
    shared = k * trunk + (M C + C) + (C C + C) + (C k + k) + ((F + C) out + out); task_specific = 0.
    """

    def __init__(
        self,
        input_dim: InputDim,
        output_dim: int,
        num_tasks: int,
        hidden: Sequence[int] = (64, 64),
        num_encoders: int = 4,
        context_width: int = 64,
        metadata: Sequence[Sequence[float]] | None = None,
        norm: bool = True,
    ) -> None:
        super().__init__(num_tasks)
        if not isinstance(num_encoders, int) or num_encoders < 1:
            raise ValueError(f"num_encoders must be a positive int, got {num_encoders!r}")
        if not isinstance(context_width, int) or context_width < 1:
            raise ValueError(f"context_width must be a positive int, got {context_width!r}")
        self.input_dim = validate_input_dim(input_dim)
        table = torch.eye(num_tasks) if metadata is None else torch.as_tensor(metadata, dtype=torch.float32)
        if table.dim() != 2 or table.shape[0] != num_tasks:
            raise ValueError(f"metadata must be [num_tasks={num_tasks}, M] vectors, got shape {tuple(table.shape)}")
        if not bool(torch.isfinite(table).all()):
            raise ValueError("metadata must be finite")
        self.register_buffer("metadata", table.clone())
        hidden = tuple(hidden)
        self.encoders = nn.ModuleList(nn.Sequential(*make_trunk(self.input_dim, hidden, norm))
                                      for _ in range(num_encoders))
        features = trunk_feature_dim(self.input_dim, hidden)
        self.context = nn.Sequential(nn.Linear(table.shape[1], context_width), nn.ReLU(),
                                     nn.Linear(context_width, context_width), nn.ReLU())
        self.attention = nn.Linear(context_width, num_encoders)
        self.head = nn.Linear(features + context_width, output_dim)
        # No task-specific parameters: one empty module per task keeps the base class's split.
        self.task_specific = nn.ModuleList(nn.Identity() for _ in range(num_tasks))

    def attention_weights_for(self, metadata: Tensor) -> Tensor:
        """Softmax weights ``[B, k]`` over the encoders for metadata rows ``[B, M]``."""
        return torch.softmax(self.attention(self.context(metadata)), dim=-1)

    def attention_weights(self, task: Tensor) -> Tensor:
        """Softmax weights ``[B, k]`` over the encoders for each task id."""
        return self.attention_weights_for(self.metadata[task])

    def forward(self, x: Tensor, task: Tensor) -> Tensor:
        self.check_task(x, task)
        x = shape_input(x, self.input_dim)
        encoded = torch.stack([flatten_features(encoder(x)) for encoder in self.encoders], dim=1)  # [B, k, F]
        context = self.context(self.metadata[task])
        weights = torch.softmax(self.attention(context), dim=-1)  # [B, k]
        mixed = torch.einsum("bk,bkf->bf", weights, encoded)
        return self.head(torch.cat([mixed, context], dim=-1))
