"""grouped_regression: synthetic regression tasks with planted groups.

    phi(x) = tanh(A x)                      shared random features (orthonormal rows of A
                                            times feature_gain), x ~ N(0, I_d)
    y_t(x) = s * w_t . phi(x) + noise,      w_t = v_{group(t)} + spread * e_t

Group directions v_g are the vertices of a regular simplex (pairwise cosine
-1/(G-1)) in a random basis, so groups pull shared parameters in conflicting
directions while tasks within a group nearly agree.  Tasks are assigned to
groups in a random order, and the ground truth is stored in the schema
metadata (``mto.groups``: the task names of each group).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.supervised.schema import write_table
from tasks.task_space import TaskSpace

NAME = "grouped_regression"


def task_space(num_groups: int = 3, tasks_per_group: int = 3) -> TaskSpace:
    """Names ``task_00``..; group membership is not encoded in the names."""
    return TaskSpace(tuple(f"task_{i:02d}" for i in range(num_groups * tasks_per_group)))


def group_directions(num_groups: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``num_groups`` unit vectors in R^width with pairwise cosine -1/(G-1) (one random vector if G=1)."""
    if num_groups > width:
        raise ValueError(f"num_features={width} must be >= num_groups={num_groups}")
    basis, _ = np.linalg.qr(rng.standard_normal((width, width)))
    if num_groups == 1:
        return basis[:, :1].T.copy()
    simplex = np.eye(num_groups) - 1.0 / num_groups
    simplex /= np.linalg.norm(simplex, axis=1, keepdims=True)
    return simplex @ basis[:, :num_groups].T


def generate(
    out_path: str | Path,
    seed: int = 0,
    num_groups: int = 3,
    tasks_per_group: int = 3,
    input_dim: int = 16,
    num_features: int = 8,
    samples_per_task: int = 300,
    val_per_task: int = 100,
    test_per_task: int = 100,
    task_spread: float = 0.1,
    noise: float = 0.1,
    scale: float = 2.0,
    feature_gain: float = 1.0,
) -> Path:
    """Write the grouped_regression Parquet file (every task has its own inputs)."""
    if num_groups < 1 or tasks_per_group < 1:
        raise ValueError(f"num_groups and tasks_per_group must be >= 1, got {num_groups}, {tasks_per_group}")
    rng = np.random.default_rng(seed)
    space = task_space(num_groups, tasks_per_group)
    num_tasks = len(space)
    # Orthonormal feature rows (when num_features <= input_dim) keep the groups'
    # conflict visible in input space too: A^T preserves the angles between w's.
    size = max(num_features, input_dim)
    basis, _ = np.linalg.qr(rng.standard_normal((size, size)))
    features = basis[:num_features, :input_dim] * feature_gain
    directions = group_directions(num_groups, num_features, rng)
    group_of_task = rng.permutation(np.repeat(np.arange(num_groups), tasks_per_group))
    weights = directions[group_of_task] + task_spread * rng.standard_normal((num_tasks, num_features)) / np.sqrt(num_features)

    sizes = {"train": samples_per_task, "val": val_per_task, "test": test_per_task}
    rows_per_task = sum(sizes.values())
    task = np.repeat(np.arange(num_tasks), rows_per_task)
    split = np.tile(np.concatenate([np.full(n, s) for s, n in sizes.items()]), num_tasks)
    x = rng.standard_normal((len(task), input_dim)).astype(np.float32)
    phi = np.tanh(x @ features.T)
    y = scale * np.einsum("nk,nk->n", phi, weights[task]) + noise * rng.standard_normal(len(task))
    groups = [[space.names[t] for t in np.flatnonzero(group_of_task == g)] for g in range(num_groups)]
    return write_table(
        out_path,
        name=NAME,
        task_names=space.names,
        input_shape=(input_dim,),
        target="regression",
        example_id=np.arange(len(task)),
        split=split,
        task=task,
        x=x,
        y=y.astype(np.float32),
        extra_metadata={
            "groups": groups,
            "params": {
                "seed": seed,
                "num_groups": num_groups,
                "tasks_per_group": tasks_per_group,
                "input_dim": input_dim,
                "num_features": num_features,
                "samples_per_task": samples_per_task,
                "val_per_task": val_per_task,
                "test_per_task": test_per_task,
                "task_spread": task_spread,
                "noise": noise,
                "scale": scale,
                "feature_gain": feature_gain,
            },
        },
    )
