"""CARE's task metadata for a config's tasks: one sentence per task, encoded once into a fixed vector."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orchestrator.config import ExperimentConfig
from tasks.metadata import DEFAULT_DIM, metadata_matrix


def task_metadata(cfg: ExperimentConfig, task_names: Sequence[str], dim: int = DEFAULT_DIM) -> np.ndarray:
    """``float32 [tasks, dim]``: Meta-World's task sentences, or "obtain <item>" for Simon Says."""
    if cfg.task.family == "metaworld":
        from tasks.metaworld import task_metadata as metaworld_metadata

        return metaworld_metadata(task_names, dim)
    return metadata_matrix([f"obtain {name.replace('_', ' ')}" for name in task_names], dim)
