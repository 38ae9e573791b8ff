"""MineRL 0.4.4 as Simon Says (extra ``mto[minerl]``; needs Java 8 and a Minecraft build).

The logic lives in pure functions over observation dictionaries in MineRL 0.4.4's
documented format, e.g. for ``MineRLObtainDiamond-v0``::

    {"pov": uint8 (64, 64, 3),
     "inventory": {"coal": array(0), "cobblestone": array(3), "log": array(1), ...},
     "equipped_items": {"mainhand": {"type": "wooden_pickaxe", "damage": array(0), "maxDamage": array(59)}}}

They map the inventory onto the techtree item vocabulary (same names: MineRL 0.4.4 runs
Minecraft 1.11), and give the same reward, ``info["items_obtained"]`` and task ids as the
techtree backend. The live environment (``SimonSaysEnv(backend="minerl")``) wraps a MineRL
gym env with them; it is not exercised by the tests, which cannot start Minecraft.
Actions are MineRL's own dict actions (no discrete action set is imposed here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from tasks.simon_says.task_sets import make_task_space
from tasks.simon_says.techtree_data import load_tech_tree
from tasks.simon_says.techtree_env import STACK
from tasks.task_space import MissingExtraError, TaskSpace

POV_SHAPE = (64, 64, 3)
DEFAULT_MINERL_ENV = "MineRLObtainDiamond-v0"


def inventory_vector(obs: Mapping[str, Any], item_names: Sequence[str]) -> np.ndarray:
    """Counts of ``item_names`` in a MineRL observation (int64); items MineRL does not report are 0.

    Raises ``KeyError`` naming the field if the observation has no ``inventory``.
    """
    if "inventory" not in obs:
        raise KeyError(f"MineRL observation has no 'inventory' field (fields: {sorted(obs)})")
    inv = obs["inventory"]
    index = {n: i for i, n in enumerate(item_names)}
    counts = np.zeros(len(item_names), dtype=np.int64)
    for name, value in inv.items():
        i = index.get(name)
        if i is not None:
            counts[i] = int(np.asarray(value).reshape(()))
    return counts


@dataclass
class Outcome:
    """What one MineRL step means for Simon Says."""

    reward: float
    success: bool
    items_obtained: np.ndarray  # bool, items held for the first time this episode
    ever: np.ndarray  # bool, items held at any time this episode (carry to the next step)


def step_outcome(inventory: np.ndarray, ever: np.ndarray, goal_item: int) -> Outcome:
    """Reward 1 and success when the goal item is held for the first time this episode."""
    held = inventory > 0
    new = held & ~ever
    success = bool(new[goal_item])
    return Outcome(float(success), success, new, ever | held)


def is_done(success: bool, minerl_done: bool, t: int, horizon: int) -> tuple[bool, bool]:
    """``(terminated, truncated)``: success or MineRL's own end (death) terminate; ``horizon`` truncates."""
    terminated = success or minerl_done
    return terminated, (not terminated) and t >= horizon


def observation_vector(obs: Mapping[str, Any], task: int, num_tasks: int, inventory: np.ndarray,
                       t: int, horizon: int) -> np.ndarray:
    """``[one-hot task | inventory min(count,64)/64 | pov / 255 | time left]`` as float32."""
    pov = np.asarray(obs["pov"], dtype=np.float32).reshape(-1) * np.float32(1.0 / 255.0)
    if pov.size != int(np.prod(POV_SHAPE)):
        raise ValueError(f"MineRL 'pov' has {pov.size} values, expected shape {POV_SHAPE}")
    one_hot = np.zeros(num_tasks, dtype=np.float32)
    one_hot[task] = 1.0
    inv = np.minimum(inventory, STACK).astype(np.float32) / np.float32(STACK)
    return np.concatenate([one_hot, inv, pov, np.array([1.0 - t / horizon], dtype=np.float32)])


def _minerl():
    try:
        import gym as old_gym  # MineRL 0.4.4 registers its envs with the classic gym API
        import minerl  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            "the Simon Says 'minerl' backend needs MineRL 0.4.4: pip install 'mto[minerl]' "
            "(requires Java 8 (JDK) and downloads/builds Minecraft with Gradle on first use)") from exc
    return old_gym


class SimonSaysEnv(gym.Env):
    """One MineRL game as Simon Says (``backend="minerl"``). Not run by the tests."""

    metadata = {"render_modes": []}

    def __init__(self, tasks: Sequence[str] | None = None, horizon: int = 300, backend: str = "minerl",
                 minerl_env: str = DEFAULT_MINERL_ENV, **_: Any) -> None:
        old_gym = _minerl()
        self.task_space: TaskSpace = make_task_space(tasks, backend="minerl")
        self.item_names = load_tech_tree().item_names
        index = {n: i for i, n in enumerate(self.item_names)}
        self.task_item_index = np.array([index[n] for n in self.task_space.names], dtype=np.int64)
        self.horizon = int(horizon)
        self._env = old_gym.make(minerl_env)
        self.action_space = self._env.action_space  # MineRL's dict action space (classic gym)
        size = len(self.task_space) + len(self.item_names) + int(np.prod(POV_SHAPE)) + 1
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)
        self._sampler = lambda n, rng: rng.integers(0, len(self.task_space), size=n)
        self._task, self._t = 0, 0
        self._ever = np.zeros(len(self.item_names), dtype=bool)

    def set_task_sampler(self, fn) -> None:
        """``fn(num_resets, rng) -> task indices`` chooses the goal at every reset."""
        self._sampler = fn

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        forced = (options or {}).get("task")
        self._task = int(forced) if forced is not None else int(np.asarray(self._sampler(1, self.np_random))[0])
        self._t = 0
        obs = self._env.reset()
        inv = inventory_vector(obs, self.item_names)
        self._ever = inv > 0
        info = {"task": np.int64(self._task), "success": np.bool_(False),
                "items_obtained": np.zeros(len(self.item_names), dtype=bool)}
        return observation_vector(obs, self._task, len(self.task_space), inv, 0, self.horizon), info

    def step(self, action):
        obs, _, minerl_done, _ = self._env.step(action)
        self._t += 1
        inv = inventory_vector(obs, self.item_names)
        out = step_outcome(inv, self._ever, int(self.task_item_index[self._task]))
        self._ever = out.ever
        terminated, truncated = is_done(out.success, bool(minerl_done), self._t, self.horizon)
        info = {"task": np.int64(self._task), "success": np.bool_(out.success), "items_obtained": out.items_obtained}
        return (observation_vector(obs, self._task, len(self.task_space), inv, self._t, self.horizon),
                out.reward, terminated, truncated, info)

    def close(self) -> None:
        self._env.close()


def SimonSaysVectorEnv(num_envs: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:  # noqa: N802
    """``num_envs`` MineRL games (one Minecraft process each) in gymnasium's SyncVectorEnv."""
    _minerl()
    return gym.vector.SyncVectorEnv([lambda: SimonSaysEnv(**kwargs) for _ in range(num_envs)])
