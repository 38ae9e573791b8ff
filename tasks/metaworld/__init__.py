"""Meta-World MT10 / MT50 (robot manipulation, MuJoCo) as a task family (extra ``mto[metaworld]``).

One task-conditioned vector env over the task set (task one-hot appended to the observation,
``info["task"]`` / ``info["success"]``), registered as ``ENV_ID`` with a ``vector_entry_point``
so RLlib's EnvRunners build it natively vectorised. The task names and each task's sentence
(CARE's metadata) are plain data: importing this package does not need the extra.
"""

from __future__ import annotations

import gymnasium as gym

from tasks.metaworld.task_sets import (
    DESCRIPTIONS,
    MT10,
    MT50,
    TASK_SETS,
    make_task_space,
    require_metaworld,
    task_metadata,
)
from tasks.task_space import MissingExtraError

ENV_ID = "mto/MetaWorld-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, vector_entry_point="tasks.metaworld.envs:MetaWorldVectorEnv")

__all__ = ["DESCRIPTIONS", "ENV_ID", "MT10", "MT50", "MissingExtraError", "TASK_SETS", "make_task_space",
           "require_metaworld", "task_metadata"]
