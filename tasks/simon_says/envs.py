"""Gymnasium environments for Simon Says: a native vector env and a single env.

``SimonSaysVectorEnv(num_envs, tasks=None, horizon=300, backend="techtree", copy=True)``
steps ``num_envs`` techtree games at once (gymnasium 1.x NEXT_STEP autoreset);
``SimonSaysEnv(...)`` is one game. ``copy=False`` returns the env's own observation buffer,
which the next step overwrites (faster; only for callers that do not keep observations). ``backend="crafter"`` / ``"minerl"`` return the
corresponding backend's env from the same constructors.

``action_mask=True`` (techtree only) makes the observation RLlib's action-masking layout, a
``Dict`` of ``"observations"`` (the flat vector above, unchanged) and ``"action_mask"``
(``float32 [num_actions]``, 1 where the action would change the state now; see
``TechTreeCore.action_mask``). The default ``False`` keeps the flat ``Box`` observation.

``count_milestones=True`` (techtree only) adds ``info["milestones_obtained"]``: bool per
milestone of ``milestones`` (``tasks.simon_says.milestones``), true at the step an episode
first holds that count of that ingredient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from tasks.simon_says.milestones import CountMilestones
from tasks.simon_says.milestones import count_milestones as milestones_of
from tasks.simon_says.task_sets import BACKENDS, check_backend, make_task_space
from tasks.simon_says.techtree_data import load_tech_tree
from tasks.simon_says.techtree_env import TechTreeCore
from tasks.task_space import TaskSpace

TaskSampler = Callable[[int, np.random.Generator], np.ndarray]


def uniform_task_sampler(num_tasks: int) -> TaskSampler:
    """The default sampler: each resetting env draws a task uniformly."""

    def sample(num_resets: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, num_tasks, size=num_resets, dtype=np.int64)

    return sample


def _forced_tasks(options: dict | None, num_envs: int, num_tasks: int) -> np.ndarray | None:
    """``options["task"]`` (int or array of task indices) broadcast to ``num_envs``."""
    if not options or options.get("task") is None:
        return None
    tasks = np.broadcast_to(np.asarray(options["task"], dtype=np.int64), (num_envs,)).copy()
    if tasks.min() < 0 or tasks.max() >= num_tasks:
        raise ValueError(f"options['task'] must be task indices in 0..{num_tasks - 1}, got {options['task']!r}")
    return tasks


def _other_backend(backend: str, vector: bool, kwargs: dict[str, Any]):
    check_backend(backend)
    for option in ("action_mask", "count_milestones"):
        if kwargs.pop(option, False):
            raise ValueError(f"{option}=True is only offered by the techtree backend, not backend={backend!r}")
    if backend == "crafter":
        from tasks.simon_says import crafter_backend as mod
    else:
        from tasks.simon_says import minerl_backend as mod
    return mod.SimonSaysVectorEnv if vector else mod.SimonSaysEnv


class _TechTreeEnvBase:
    """What the single and vector techtree envs share: task space, core, sampler."""

    def _setup(self, num_envs: int, tasks: Sequence[str] | None, horizon: int, copy: bool,
               action_mask: bool, count_milestones: bool = False) -> None:
        self.tree = load_tech_tree()
        self.task_space: TaskSpace = make_task_space(tasks, backend="techtree")
        self.item_names: tuple[str, ...] = self.tree.item_names
        index = self.tree.item_index()
        self.task_item_index = np.array([index[n] for n in self.task_space.names], dtype=np.int64)
        self.action_mask = bool(action_mask)
        self.core = TechTreeCore(self.tree, self.task_item_index, num_envs, horizon, action_mask=self.action_mask)
        self.horizon = int(horizon)
        self.action_names: tuple[str, ...] = self.core.action_names
        self.observation_layout = self.core.layout
        self._copy = bool(copy)
        self._sampler: TaskSampler = uniform_task_sampler(len(self.task_space))
        self._seeded = False
        # the mask buffer that copy=False hands out (and the next step overwrites)
        self._mask = np.zeros((num_envs if action_mask else 0, len(self.action_names)), dtype=np.float32)
        self.milestones: CountMilestones | None = None
        if count_milestones:
            self.milestones = milestones_of(self.tree)
            self._milestone_reached = np.zeros((num_envs, len(self.milestones)), dtype=bool)

    def _new_milestones(self, restarted: np.ndarray | None = None) -> np.ndarray:
        """Milestones reached for the first time this episode, per env (restarted envs start over)."""
        reached = self._milestone_reached
        if restarted is not None:
            reached[restarted] = False
        m = self.milestones
        now = self.core.inventory[:, m.item] >= m.count
        new = now & ~reached
        reached |= now
        return new

    def _single_space(self) -> gym.Space:
        """One env's observation space: the flat Box, or the Dict with the action mask."""
        box = gym.spaces.Box(0.0, 1.0, (self.core.layout.size,), np.float32)
        if not self.action_mask:
            return box
        return gym.spaces.Dict({"observations": box,
                                "action_mask": gym.spaces.Box(0.0, 1.0, (len(self.action_names),), np.float32)})

    def _masked(self, obs: np.ndarray, row: int | None) -> np.ndarray | dict[str, np.ndarray]:
        """``obs`` alone, or with the action mask (all envs, or env ``row``) when it is on."""
        if not self.action_mask:
            return obs
        mask = self.core.action_mask(out=None if self._copy else self._mask)
        return {"observations": obs, "action_mask": mask if row is None else mask[row]}

    def set_task_sampler(self, fn: TaskSampler) -> None:
        """Use ``fn(num_resets, rng) -> task indices`` to choose the goal at every reset."""
        self._sampler = fn

    def _sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        tasks = np.asarray(self._sampler(count, rng), dtype=np.int64).reshape(count)
        if count and (tasks.min() < 0 or tasks.max() >= len(self.task_space)):
            raise ValueError(f"task sampler returned indices outside 0..{len(self.task_space) - 1}: {tasks}")
        return tasks

    def _seed_core(self, seed: int | None, rng: np.random.Generator) -> None:
        if seed is not None:
            self.core.seed(seed)
        elif not self._seeded:
            self.core.seed(int(rng.integers(0, 2**63)))
        self._seeded = True


class SimonSaysVectorEnv(_TechTreeEnvBase, VectorEnv):
    """``num_envs`` Simon Says games stepped together with numpy (techtree backend).

    Observation ``(num_envs, D)`` float32 with ``obs[:, :len(task_space)]`` the one-hot goal;
    see ``observation_layout`` for the other columns. With ``action_mask=True``, a dict
    ``{"observations": (num_envs, D), "action_mask": (num_envs, num_actions)}`` instead. ``info``: ``task``, ``success``,
    ``items_obtained`` (first time this episode, per item).
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __new__(cls, *args: Any, backend: str = "techtree", **kwargs: Any):
        if backend != "techtree":
            return _other_backend(backend, True, kwargs)(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, num_envs: int = 1, tasks: Sequence[str] | None = None, horizon: int = 300,
                 backend: str = "techtree", copy: bool = True, action_mask: bool = False,
                 count_milestones: bool = False) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self._setup(self.num_envs, tasks, horizon, copy, action_mask, count_milestones)
        self.single_observation_space = self._single_space()
        self.single_action_space = gym.spaces.Discrete(len(self.action_names))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset every sub-env; ``seed`` s seeds sub-env i like a single env seeded s + i."""
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        self._seed_core(seed, self.np_random)
        tasks = _forced_tasks(options, self.num_envs, len(self.task_space))
        if tasks is None:
            tasks = self._sample(self.num_envs, self.np_random)
        self.core.reset_envs(np.arange(self.num_envs), tasks)
        self._autoreset[:] = False
        zeros = np.zeros(self.num_envs, dtype=bool)
        info = {"task": self.core.task.copy(), "success": zeros,
                "items_obtained": np.zeros((self.num_envs, len(self.item_names)), dtype=bool)}
        if self.milestones is not None:
            info["milestones_obtained"] = self._new_milestones(np.arange(self.num_envs))
        return self._observation(), info

    def step(self, actions):
        """Step all sub-envs; those done at the previous step reset instead (action ignored)."""
        resetting = self._autoreset
        any_reset = bool(resetting.any())
        reward, terminated, truncated, success, obtained = self.core.step(
            actions, resetting if any_reset else None)
        idx = None
        if any_reset:
            idx = np.flatnonzero(resetting)
            self.core.reset_envs(idx, self._sample(idx.size, self.np_random))
        self._autoreset = terminated | truncated
        info = {"task": self.core.task.copy(), "success": success, "items_obtained": obtained}
        if self.milestones is not None:
            info["milestones_obtained"] = self._new_milestones(idx)
        return self._observation(), reward, terminated, truncated, info

    def _observation(self) -> np.ndarray | dict[str, np.ndarray]:
        return self._masked(self.core.obs.copy() if self._copy else self.core.obs, None)


class SimonSaysEnv(_TechTreeEnvBase, gym.Env):
    """One Simon Says game (techtree backend); same observation and info keys, no batch dim."""

    metadata = {"render_modes": []}

    def __new__(cls, *args: Any, backend: str = "techtree", **kwargs: Any):
        if backend != "techtree":
            return _other_backend(backend, False, kwargs)(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, tasks: Sequence[str] | None = None, horizon: int = 300, backend: str = "techtree",
                 copy: bool = True, action_mask: bool = False, count_milestones: bool = False) -> None:
        self._setup(1, tasks, horizon, copy, action_mask, count_milestones)
        self.observation_space = self._single_space()
        self.action_space = gym.spaces.Discrete(len(self.action_names))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._seed_core(seed, self.np_random)
        tasks = _forced_tasks(options, 1, len(self.task_space))
        if tasks is None:
            tasks = self._sample(1, self.np_random)
        self.core.reset_envs(np.zeros(1, dtype=np.int64), tasks)
        info = {"task": self.core.task[0].copy(), "success": np.bool_(False),
                "items_obtained": np.zeros(len(self.item_names), dtype=bool)}
        if self.milestones is not None:
            info["milestones_obtained"] = self._new_milestones(np.zeros(1, dtype=np.int64))[0]
        return self._observation(), info

    def step(self, action):
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(f"action {action!r} not in {self.action_space}")
        reward, terminated, truncated, success, obtained = self.core.step(np.array([action], dtype=np.int64))
        info = {"task": self.core.task[0].copy(), "success": success[0], "items_obtained": obtained[0]}
        if self.milestones is not None:
            info["milestones_obtained"] = self._new_milestones()[0]
        return self._observation(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def _observation(self) -> np.ndarray | dict[str, np.ndarray]:
        return self._masked(self.core.obs[0].copy() if self._copy else self.core.obs[0], 0)


__all__ = ["BACKENDS", "SimonSaysEnv", "SimonSaysVectorEnv", "TaskSampler", "uniform_task_sampler"]
