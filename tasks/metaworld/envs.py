"""Meta-World MT10 / MT50 as one task-conditioned, natively vectorised gymnasium env.

``MetaWorldVectorEnv(num_envs, task_set="MT10", tasks=None, horizon=500)`` steps
``num_envs`` Meta-World (MuJoCo) environments. At every reset a slot draws a task from
the task sampler (uniform by default; the curriculum wrapper installs its own) and one
of Meta-World's 50 goal variations of that task, as ``metaworld.MT10`` defines them.
The observation is Meta-World's 39 numbers with the task one-hot appended, as the
MT10/MT50 papers feed it (``obs[:, -num_tasks:]``); ``info`` carries ``task`` and
``success`` (Meta-World's own per-step flag). Episodes are truncated at ``horizon``
(at most Meta-World's 500), never terminated, as in the benchmark. Gymnasium 1.x
NEXT_STEP autoreset, like the Simon Says vector env.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from tasks.metaworld.task_sets import make_task_space, require_metaworld
from tasks.task_space import TaskSpace

TaskSampler = Callable[[int, np.random.Generator], np.ndarray]
STATE_DIM = 39  # Meta-World's observation (hand, gripper, two objects, previous frame, goal)
ACTION_DIM = 4  # hand displacement xyz + gripper
MAX_HORIZON = 500  # Meta-World's max_path_length: stepping past it raises


@functools.lru_cache(maxsize=4)
def benchmark(task_set: str, seed: int):
    """``metaworld.MT10(seed)`` / ``MT50(seed)``, built once per process (it resets every task's
    env 50 times to draw the goals: ~4 s for MT10)."""
    metaworld = require_metaworld()
    return getattr(metaworld, task_set)(seed=seed)


def _uniform(num_tasks: int) -> TaskSampler:
    def sample(count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, num_tasks, size=count, dtype=np.int64)

    return sample


class MetaWorldVectorEnv(VectorEnv):
    """``num_envs`` Meta-World envs; observation ``float32 [num_envs, 39 + T]``, action ``[num_envs, 4]``.

    ``benchmark_seed`` fixes Meta-World's goal variations (the benchmark's own seed);
    ``reset(seed=...)`` seeds the task and goal draws. ``options={"task": ids}`` forces tasks
    (e.g. for evaluation). ``goal(i)`` is the ``metaworld.Task`` slot ``i`` runs now.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, task_set: str = "MT10", tasks: Sequence[str] | None = None,
                 horizon: int = MAX_HORIZON, benchmark_seed: int = 0, copy: bool = True) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not 1 <= int(horizon) <= MAX_HORIZON:
            raise ValueError(f"horizon must be in 1..{MAX_HORIZON} (Meta-World's max_path_length), got {horizon}")
        self.num_envs = int(num_envs)
        self.task_space: TaskSpace = make_task_space(task_set, tasks)
        self.item_names: tuple[str, ...] = ()  # no items: the curriculum's exploration bonus has nothing to pay
        self.horizon = int(horizon)
        self._copy = bool(copy)
        bench = benchmark(task_set, int(benchmark_seed))
        self._classes = [bench.train_classes[name] for name in self.task_space.names]
        self._goals = [[g for g in bench.train_tasks if g.env_name == name] for name in self.task_space.names]
        num_tasks = len(self.task_space)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (STATE_DIM + num_tasks,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._sampler: TaskSampler = _uniform(num_tasks)
        # Envs are per task class; a slot borrows one of its task's and returns it at the next reset,
        # so at most num_envs + T instances exist whatever the task sequence.
        self._free: list[list[Any]] = [[] for _ in range(num_tasks)]
        self._envs: list[Any] = [None] * self.num_envs
        self._slot_goal: list[Any] = [None] * self.num_envs
        self._task = np.zeros(self.num_envs, dtype=np.int64)
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._obs = np.zeros((self.num_envs, STATE_DIM + num_tasks), dtype=np.float32)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    # --- task-family contract -------------------------------------------------------------
    def set_task_sampler(self, fn: TaskSampler) -> None:
        """Use ``fn(num_resets, rng) -> task indices`` to choose each slot's task at every reset."""
        self._sampler = fn

    def goal(self, slot: int):
        """The ``metaworld.Task`` (task + goal variation) slot ``slot`` runs now."""
        return self._slot_goal[slot]

    def _sample(self, count: int) -> np.ndarray:
        tasks = np.asarray(self._sampler(count, self.np_random), dtype=np.int64).reshape(count)
        if count and (tasks.min() < 0 or tasks.max() >= len(self.task_space)):
            raise ValueError(f"task sampler returned indices outside 0..{len(self.task_space) - 1}: {tasks}")
        return tasks

    def _reset_slot(self, slot: int, task: int) -> None:
        old = self._envs[slot]
        if old is not None:
            self._free[self._task[slot]].append(old)
        env = self._free[task].pop() if self._free[task] else self._classes[task]()
        goal = self._goals[task][int(self.np_random.integers(len(self._goals[task])))]
        env.set_task(goal)
        state, _ = env.reset()
        self._envs[slot], self._slot_goal[slot], self._task[slot] = env, goal, task
        self._steps[slot] = 0
        self._obs[slot, :STATE_DIM] = state
        self._obs[slot, STATE_DIM:] = 0.0
        self._obs[slot, STATE_DIM + task] = 1.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset every slot (task from ``options["task"]`` or the sampler)."""
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        if options and options.get("task") is not None:
            tasks = np.broadcast_to(np.asarray(options["task"], dtype=np.int64), (self.num_envs,))
            if tasks.min() < 0 or tasks.max() >= len(self.task_space):
                raise ValueError(f"options['task'] must be task indices in 0..{len(self.task_space) - 1}")
        else:
            tasks = self._sample(self.num_envs)
        for slot, task in enumerate(tasks):
            self._reset_slot(slot, int(task))
        self._autoreset[:] = False
        info = {"task": self._task.copy(), "success": np.zeros(self.num_envs, dtype=bool)}
        return self._observation(), info

    def step(self, actions):
        """Step every slot; slots done at the previous step reset instead (their action is ignored)."""
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, ACTION_DIM)
        reward = np.zeros(self.num_envs, dtype=np.float32)
        success = np.zeros(self.num_envs, dtype=bool)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        resetting = np.flatnonzero(self._autoreset)
        if resetting.size:
            for slot, task in zip(resetting, self._sample(resetting.size)):
                self._reset_slot(int(slot), int(task))
        stepping = np.flatnonzero(~self._autoreset)
        for slot in stepping:
            state, r, _, _, info = self._envs[slot].step(np.clip(actions[slot], -1.0, 1.0))
            self._obs[slot, :STATE_DIM] = state
            reward[slot] = r
            success[slot] = bool(info["success"])
        self._steps[stepping] += 1
        truncated[stepping] = self._steps[stepping] >= self.horizon
        self._autoreset = terminated | truncated
        info = {"task": self._task.copy(), "success": success}
        return self._observation(), reward, terminated, truncated, info

    def _observation(self) -> np.ndarray:
        return self._obs.copy() if self._copy else self._obs

    def close_extras(self, **kwargs: Any) -> None:
        for env in [*self._envs, *(e for free in self._free for e in free)]:
            if env is not None:
                env.close()
        self._envs = [None] * self.num_envs
        self._free = [[] for _ in self._free]


__all__ = ["ACTION_DIM", "MAX_HORIZON", "STATE_DIM", "MetaWorldVectorEnv", "benchmark"]
