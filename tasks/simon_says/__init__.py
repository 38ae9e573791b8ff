"""Minecraft "Simon Says": at each episode the agent is told which item to obtain.

Backends: ``techtree`` (symbolic Minecraft 1.11 from minecraft-data, numpy-vectorised),
``crafter`` (the Crafter benchmark, extra ``mto[crafter]``) and ``minerl`` (MineRL 0.4.4,
extra ``mto[minerl]``, needs Java 8). Importing this package registers ``ENV_ID``.
"""

from __future__ import annotations

import gymnasium as gym

from tasks.simon_says.envs import SimonSaysEnv, SimonSaysVectorEnv, uniform_task_sampler
from tasks.simon_says.milestones import CountMilestones, count_milestones
from tasks.simon_says.task_sets import (
    BACKENDS,
    UnobtainableItemError,
    goal_prerequisite_items,
    make_task_space,
    prerequisites,
)
from tasks.task_space import MissingExtraError, TaskSpace, UnknownTaskError

ENV_ID = "mto/SimonSays-v0"

if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="tasks.simon_says.envs:SimonSaysEnv",
        vector_entry_point="tasks.simon_says.envs:SimonSaysVectorEnv",
    )

__all__ = [
    "BACKENDS",
    "CountMilestones",
    "ENV_ID",
    "count_milestones",
    "MissingExtraError",
    "goal_prerequisite_items",
    "SimonSaysEnv",
    "SimonSaysVectorEnv",
    "TaskSpace",
    "UnknownTaskError",
    "UnobtainableItemError",
    "make_task_space",
    "prerequisites",
    "uniform_task_sampler",
]
