"""pareto_toy: the two-objective problem of the Pareto MTL paper (Lin et al. 2019, sec. 6.1).

    f_1(x) = 1 - exp(-sum_i (x_i - 1/sqrt(n))^2)
    f_2(x) = 1 - exp(-sum_i (x_i + 1/sqrt(n))^2),   x in R^n, n = 20

The Pareto set is the segment x = s c, s in [-1, 1], c = (1/sqrt(n), ..., 1/sqrt(n)),
so the front is (1 - exp(-(1 - s)^2), 1 - exp(-(1 + s)^2)): concave, which is
where linear scalarisation fails and Pareto MTL does not.  The Parquet file
stores one row per objective: ``x`` is its centre (+c or -c), ``y`` is 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tasks.supervised.schema import write_table
from tasks.task_space import TaskSpace

NAME = "pareto_toy"
TASK_SPACE = TaskSpace(("f1", "f2"))


def centres(dimension: int = 20) -> np.ndarray:
    """[2, n]: +1/sqrt(n) and -1/sqrt(n) in every coordinate."""
    c = np.full(dimension, 1.0 / np.sqrt(dimension))
    return np.stack([c, -c])


def objectives(x: Tensor, centre: Tensor) -> Tensor:
    """[2] objective values at ``x`` [n] for centres ``centre`` [2, n] (differentiable)."""
    return 1.0 - torch.exp(-((x[None, :] - centre) ** 2).sum(dim=1))


def pareto_front(num_points: int = 2001) -> np.ndarray:
    """[num_points, 2] points of the analytic front, s from -1 to 1."""
    s = np.linspace(-1.0, 1.0, num_points)
    return np.stack([1 - np.exp(-((1 - s) ** 2)), 1 - np.exp(-((1 + s) ** 2))], axis=1)


def distance_to_front(values: np.ndarray | Tensor, num_points: int = 20001) -> float:
    """Euclidean distance from an objective vector (f1, f2) to the analytic front."""
    f = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64)
    return float(np.min(np.linalg.norm(pareto_front(num_points) - f[None, :], axis=1)))


def generate(out_path: str | Path, seed: int = 0, dimension: int = 20) -> Path:
    """Write the pareto_toy Parquet file (the problem's definition: the two centres)."""
    if dimension < 1:
        raise ValueError(f"dimension must be >= 1, got {dimension}")
    return write_table(
        out_path,
        name=NAME,
        task_names=TASK_SPACE.names,
        input_shape=(dimension,),
        target="objective",
        example_id=np.arange(2),
        split=np.array(["train", "train"]),
        task=np.arange(2),
        x=centres(dimension),
        y=np.zeros(2, dtype=np.float32),
        extra_metadata={"params": {"seed": seed, "dimension": dimension}},
    )
