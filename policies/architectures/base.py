"""What every multi-task network shares: the (input, task id) contract, the
split into shared and task-specific parameters, and the trunk building blocks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

InputDim = int | tuple[int, int, int]


class MultiTaskNetwork(nn.Module):
    """Base class: ``forward(x, task)`` returns each sample's output from its own task.

    Subclasses put every task-specific parameter of task ``t`` inside
    ``self.task_specific[t]`` (an ``nn.ModuleList`` with one module per task);
    everything else is shared.  That single rule gives ``shared_parameters``,
    ``task_parameters`` and ``parameter_counts`` for free.
    """

    task_specific: nn.ModuleList

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
        self.num_tasks = num_tasks

    def task_parameters(self, task: int | None = None) -> list[nn.Parameter]:
        """Parameters used only by ``task`` (all tasks' when ``task`` is None)."""
        if task is None:
            return [p for part in self.task_specific for p in part.parameters()]
        if not 0 <= task < len(self.task_specific):
            raise ValueError(f"task must be in [0, {len(self.task_specific)}), got {task}")
        return list(self.task_specific[task].parameters())

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss flows through (everything not task-specific)."""
        task_ids = {id(p) for p in self.task_parameters()}
        return [p for p in self.parameters() if id(p) not in task_ids]

    def parameter_counts(self) -> dict[str, int]:
        """Number of shared and task-specific (summed over tasks) scalars."""
        return {
            "shared": sum(p.numel() for p in self.shared_parameters()),
            "task_specific": sum(p.numel() for p in self.task_parameters()),
        }

    def check_task(self, x: Tensor, task: Tensor) -> None:
        """Refuse a task tensor that does not match the batch or names an unknown task."""
        if task.dim() != 1 or task.shape[0] != x.shape[0]:
            raise ValueError(
                f"task must be a LongTensor of shape [B]={x.shape[0]}, got shape {tuple(task.shape)}"
            )
        if task.numel() and (int(task.min()) < 0 or int(task.max()) >= self.num_tasks):
            raise ValueError(
                f"task ids must be in [0, {self.num_tasks}), got min {int(task.min())} max {int(task.max())}"
            )


def route_by_task(x: Tensor, task: Tensor, fns: Sequence[Callable[[Tensor], Tensor]]) -> Tensor:
    """Apply ``fns[t]`` to the rows of ``x`` whose task is ``t``; keep the row order.

    One sort and one gather instead of T masked copies, so the cost stays one
    pass over the batch whatever T is.
    """
    order = torch.argsort(task, stable=True)
    counts = torch.bincount(task, minlength=len(fns)).tolist()
    chunks = torch.split(x[order], counts)
    outs = [fns[t](chunk) for t, chunk in enumerate(chunks) if counts[t] > 0]
    out_sorted = torch.cat(outs)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return out_sorted[inverse]


class TrunkBlock(nn.Module):
    """One trunk layer: Linear (or 3x3 stride-2 Conv) -> norm -> ReLU.

    The norm is per sample (LayerNorm / GroupNorm(1, C)), never BatchNorm:
    batch statistics would differ between data-parallel workers and per-task
    sub-batches, and make results depend on how a batch is split.
    """

    def __init__(self, in_features: int, out_features: int, conv: bool, norm: bool) -> None:
        super().__init__()
        self.conv = conv
        self.out_features = out_features
        if conv:
            self.layer: nn.Module = nn.Conv2d(in_features, out_features, 3, stride=2, padding=1)
            self.norm: nn.Module = nn.GroupNorm(1, out_features) if norm else nn.Identity()
        else:
            self.layer = nn.Linear(in_features, out_features)
            self.norm = nn.LayerNorm(out_features) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.norm(self.layer(x)))


def conv_output_side(side: int) -> int:
    """Side length after one 3x3, stride-2, padding-1 convolution."""
    return (side - 1) // 2 + 1


def mlp(input_dim: int, output_dim: int, hidden: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """A plain MLP: ``hidden`` layers with ``activation`` (relu, tanh or silu), a linear output layer."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}[activation]
    layers: list[nn.Module] = []
    width = int(input_dim)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), act()]
        width = int(h)
    return nn.Sequential(*layers, nn.Linear(width, output_dim))


def make_trunk(input_dim: InputDim, hidden: Sequence[int], norm: bool = True) -> list[TrunkBlock]:
    """Blocks for an MLP trunk (``input_dim`` int) or a conv trunk (``(C, H, W)``)."""
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden sizes must be positive, got {hidden}")
    conv = isinstance(input_dim, tuple | list)
    width = input_dim[0] if conv else int(input_dim)
    blocks = []
    for h in hidden:
        blocks.append(TrunkBlock(width, h, conv, norm))
        width = h
    return blocks


def trunk_feature_dim(input_dim: InputDim, hidden: Sequence[int]) -> int:
    """Width of the flattened trunk output (the heads' input)."""
    if isinstance(input_dim, tuple | list):
        c, h, w = input_dim
        for _ in hidden:
            h, w = conv_output_side(h), conv_output_side(w)
        return (hidden[-1] if hidden else c) * h * w
    return hidden[-1] if hidden else int(input_dim)


def validate_input_dim(input_dim: InputDim) -> InputDim:
    """Accept an int (flat features) or a (channels, height, width) triple."""
    if isinstance(input_dim, tuple | list):
        if len(input_dim) != 3 or any(int(d) < 1 for d in input_dim):
            raise ValueError(f"input_dim must be an int or (C, H, W), got {input_dim!r}")
        return tuple(int(d) for d in input_dim)  # type: ignore[return-value]
    if int(input_dim) < 1:
        raise ValueError(f"input_dim must be positive, got {input_dim!r}")
    return int(input_dim)


def shape_input(x: Tensor, input_dim: InputDim) -> Tensor:
    """Reshape flat rows to images for conv trunks (Parquet stores images flat)."""
    if isinstance(input_dim, tuple) and x.dim() == 2:
        return x.view(x.shape[0], *input_dim)
    return x


def flatten_features(h: Tensor) -> Tensor:
    """Flatten conv feature maps to rows; leave rows alone."""
    return h.flatten(1) if h.dim() > 2 else h


def linear_count(n_in: int, n_out: int) -> int:
    """Parameters of nn.Linear(n_in, n_out) with bias (used in the docstrings' formulas)."""
    return n_in * n_out + n_out


def prod(shape: Sequence[int]) -> int:
    return math.prod(shape)
