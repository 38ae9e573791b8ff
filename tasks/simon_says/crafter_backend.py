"""The Crafter benchmark (PyPI ``crafter``, extra ``mto[crafter]``) as Simon Says.

Tasks are Crafter's 22 achievements; an achievement unlocked for the first time in an
episode is an "item obtained" (``item_names`` = all achievements, by depth then name). Observation: one flat
float32 vector ``[one-hot task | 64x64x3 pixels / 255]``; actions: Crafter's 17 discrete
actions. Reward 1 and ``terminated`` when the goal achievement unlocks; ``terminated`` also
when the player dies; ``truncated`` at ``horizon``. Sub-env i of a vector env seeded s plays
the world of a single env seeded s + i. Backend keyword: ``area`` (world size, default 64x64).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from tasks.task_space import MissingExtraError, TaskSpace, UnknownTaskError, suggest

PIXELS = (64, 64, 3)
# Achievement -> what Crafter's data.yaml does not say it needs (eating a sapling you planted).
_EXTRA_REQUIREMENTS = {"eat_plant": ("place_plant",)}


def _crafter():
    try:
        import crafter
    except ImportError as exc:
        raise MissingExtraError(
            "the Simon Says 'crafter' backend needs the Crafter package: pip install 'mto[crafter]' "
            "(crafter==1.8.3)") from exc
    return crafter


def prerequisites() -> dict[str, frozenset[str]]:
    """Direct prerequisites of each achievement, from Crafter's ``data.yaml``."""
    c = _crafter().constants
    gives = {"table": "place_table", "furnace": "place_furnace", "drink": "collect_drink"}
    gives.update({item: f"collect_{item}" for item in ("wood", "stone", "coal", "iron", "diamond", "sapling")})
    gives.update({tool: f"make_{tool}" for tool in c.make})
    needs: dict[str, set[str]] = {a: set() for a in c.achievements}
    for block, rule in c.collect.items():
        name = f"collect_{next(iter(rule['receive']))}"
        if name in needs:
            needs[name] |= {gives[i] for i in rule["require"]}
    for thing, rule in c.place.items():
        needs[f"place_{thing}"] |= {gives[i] for i in rule["uses"]}
    for tool, rule in c.make.items():
        needs[f"make_{tool}"] |= {gives[i] for i in rule["uses"]} | {gives[s] for s in rule["nearby"]}
    for name, extra in _EXTRA_REQUIREMENTS.items():
        needs[name] |= set(extra)
    return {a: frozenset(n) for a, n in needs.items()}


def _depths(needs: dict[str, frozenset[str]]) -> dict[str, int]:
    depth: dict[str, int] = {}
    while len(depth) < len(needs):
        for a, n in needs.items():
            if a not in depth and all(x in depth for x in n):
                depth[a] = 1 + max((depth[x] for x in n), default=-1)
    return depth


def make_task_space(tasks: Sequence[str] | None = None) -> TaskSpace:
    """Crafter achievements as tasks, ordered by depth then name (or the given ``tasks``)."""
    depth = _depths(prerequisites())
    names = tuple(sorted(depth, key=lambda a: (depth[a], a)))
    full = TaskSpace(names, tuple(depth[a] for a in names))
    if tasks is None:
        return full
    for t in tasks:
        if t not in full:
            raise UnknownTaskError(f"unknown Crafter achievement {t!r}{suggest(str(t), names)} "
                                   f"(valid: {', '.join(names)})")
    return full.subset(tasks)


class _CrafterGames:
    """N Crafter games plus the Simon Says bookkeeping, stepped one after another."""

    def __init__(self, num_envs: int, tasks: Sequence[str] | None, horizon: int,
                 area: tuple[int, int] = (64, 64)) -> None:
        crafter = _crafter()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.task_space = make_task_space(tasks)
        # the vocabulary is every achievement in task-space order (what make_task_space(None) lists)
        self.item_names = make_task_space(None).names
        self.task_item_index = np.array([self.item_names.index(t) for t in self.task_space.names], dtype=np.int64)
        self.horizon = int(horizon)
        # length=None: Crafter never ends an episode on time itself; ``horizon`` does.
        self.games = [crafter.Env(area=tuple(area), length=None, seed=0) for _ in range(num_envs)]
        self.action_names = tuple(crafter.constants.actions)
        n, k = num_envs, len(self.task_space)
        self.size = k + int(np.prod(PIXELS))
        self.task = np.zeros(n, dtype=np.int64)
        self.t = np.zeros(n, dtype=np.int64)
        self.unlocked = np.zeros((n, len(self.item_names)), dtype=bool)

    def seed(self, seed: int) -> None:
        for i, game in enumerate(self.games):
            game._seed, game._episode = seed + i, 0  # Crafter seeds each world from (seed, episode)

    def observation(self, i: int, pixels: np.ndarray) -> np.ndarray:
        obs = np.zeros(self.size, dtype=np.float32)
        obs[self.task[i]] = 1.0
        obs[len(self.task_space):] = pixels.reshape(-1) * np.float32(1.0 / 255.0)
        return obs

    def reset(self, i: int, task: int) -> np.ndarray:
        self.task[i], self.t[i] = task, 0
        self.unlocked[i] = False
        return self.observation(i, self.games[i].reset())

    def step(self, i: int, action: int):
        pixels, _, dead, info = self.games[i].step(int(action))
        self.t[i] += 1
        now = np.array([info["achievements"][a] > 0 for a in self.item_names])
        obtained = now & ~self.unlocked[i]
        self.unlocked[i] |= now
        success = bool(obtained[self.task_item_index[self.task[i]]])
        terminated = success or bool(dead)
        truncated = not terminated and self.t[i] >= self.horizon
        return self.observation(i, pixels), float(success), terminated, truncated, success, obtained


class SimonSaysEnv(gym.Env):
    """One Crafter game as Simon Says (``backend="crafter"``)."""

    metadata = {"render_modes": []}

    def __init__(self, tasks: Sequence[str] | None = None, horizon: int = 300, backend: str = "crafter",
                 area: tuple[int, int] = (64, 64), **_: Any) -> None:
        self._games = _CrafterGames(1, tasks, horizon, area)
        self.task_space, self.item_names = self._games.task_space, self._games.item_names
        self.task_item_index = self._games.task_item_index
        self.action_names = self._games.action_names
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self._games.size,), np.float32)
        self.action_space = gym.spaces.Discrete(len(self.action_names))
        self._sampler = lambda n, rng: rng.integers(0, len(self.task_space), size=n)
        self._seeded = False

    def set_task_sampler(self, fn) -> None:
        """``fn(num_resets, rng) -> task indices`` chooses the goal at every reset."""
        self._sampler = fn

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self._games.seed(int(self.np_random.integers(0, 2**31 - 1)) if seed is None else seed)
            self._seeded = True
        forced = (options or {}).get("task")
        task = int(forced) if forced is not None else int(np.asarray(self._sampler(1, self.np_random))[0])
        if not 0 <= task < len(self.task_space):
            raise ValueError(f"task index {task} outside 0..{len(self.task_space) - 1}")
        obs = self._games.reset(0, task)
        return obs, {"task": np.int64(task), "success": np.bool_(False),
                     "items_obtained": np.zeros(len(self.item_names), dtype=bool)}

    def step(self, action):
        obs, reward, terminated, truncated, success, obtained = self._games.step(0, action)
        info = {"task": np.int64(self._games.task[0]), "success": np.bool_(success), "items_obtained": obtained}
        return obs, reward, terminated, truncated, info


class SimonSaysVectorEnv(VectorEnv):
    """``num_envs`` Crafter games as Simon Says, NEXT_STEP autoreset, same info keys."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, tasks: Sequence[str] | None = None, horizon: int = 300,
                 backend: str = "crafter", area: tuple[int, int] = (64, 64), **_: Any) -> None:
        self.num_envs = int(num_envs)
        self._games = _CrafterGames(self.num_envs, tasks, horizon, area)
        self.task_space, self.item_names = self._games.task_space, self._games.item_names
        self.task_item_index = self._games.task_item_index
        self.action_names = self._games.action_names
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (self._games.size,), np.float32)
        self.single_action_space = gym.spaces.Discrete(len(self.action_names))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._sampler = lambda n, rng: rng.integers(0, len(self.task_space), size=n)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._seeded = False

    def set_task_sampler(self, fn) -> None:
        """``fn(num_resets, rng) -> task indices``, called once per reset batch."""
        self._sampler = fn

    def _tasks(self, count: int) -> np.ndarray:
        tasks = np.asarray(self._sampler(count, self.np_random), dtype=np.int64).reshape(count)
        if count and (tasks.min() < 0 or tasks.max() >= len(self.task_space)):
            raise ValueError(f"task sampler returned indices outside 0..{len(self.task_space) - 1}")
        return tasks

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        if seed is not None or not self._seeded:
            self._games.seed(int(self.np_random.integers(0, 2**31 - 1)) if seed is None else seed)
            self._seeded = True
        forced = (options or {}).get("task")
        tasks = (np.broadcast_to(np.asarray(forced, dtype=np.int64), (self.num_envs,)) if forced is not None
                 else self._tasks(self.num_envs))
        obs = np.stack([self._games.reset(i, int(t)) for i, t in enumerate(tasks)])
        self._autoreset[:] = False
        return obs, {"task": self._games.task.copy(), "success": np.zeros(self.num_envs, dtype=bool),
                     "items_obtained": np.zeros((self.num_envs, len(self.item_names)), dtype=bool)}

    def step(self, actions):
        actions = np.asarray(actions).reshape(self.num_envs)
        n = self.num_envs
        obs = np.zeros((n, self._games.size), dtype=np.float32)
        reward = np.zeros(n, dtype=np.float32)
        terminated, truncated, success = (np.zeros(n, dtype=bool) for _ in range(3))
        obtained = np.zeros((n, len(self.item_names)), dtype=bool)
        resetting = np.flatnonzero(self._autoreset)
        new_tasks = dict(zip(resetting.tolist(), self._tasks(resetting.size).tolist())) if resetting.size else {}
        for i in range(n):
            if i in new_tasks:
                obs[i] = self._games.reset(i, new_tasks[i])
                continue
            obs[i], reward[i], terminated[i], truncated[i], success[i], obtained[i] = self._games.step(i, actions[i])
        self._autoreset = terminated | truncated
        return obs, reward, terminated, truncated, {
            "task": self._games.task.copy(), "success": success, "items_obtained": obtained}
