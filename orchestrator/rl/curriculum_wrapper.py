"""Environment-side half of the curriculum: sample tasks locally, add the bonus, report outcomes.

The wrappers keep a local copy of the curriculum's `CurriculumDistribution`
and hand the environment a task sampler that draws from it (pre-drawn in
blocks with one `searchsorted` on a cached CDF, so a reset costs well under a
microsecond and never talks to the curriculum). Finished episodes are sent in
batches through a `CurriculumClient`, and the copy is refreshed by a
non-blocking poll at most every K episodes or S seconds.

Environments follow the task-family contract: `env.set_task_sampler(fn)`,
`env.task_space`, `env.item_names`, and `info["task"]`, `info["success"]`,
`info["items_obtained"]` on every reset and step.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from curricula import Curriculum, CurriculumDistribution, EpisodeOutcomes

__all__ = [
    "CurriculumClient",
    "LocalCurriculumClient",
    "LocalTaskSampler",
    "CurriculumVectorWrapper",
    "CurriculumWrapper",
]


@runtime_checkable
class CurriculumClient(Protocol):
    """How a wrapper talks to a curriculum. `report` and `poll` never block."""

    def report(self, outcomes: EpisodeOutcomes) -> None:
        """Send finished episodes (fire-and-forget)."""

    def poll(self, known_version: int) -> CurriculumDistribution | None:
        """A newer distribution if one has arrived, else None."""

    def fetch(self, known_version: int = -1, timeout_s: float = 10.0) -> CurriculumDistribution | None:
        """Blocking get, used once when a wrapper starts; None on timeout or when unchanged."""


class LocalCurriculumClient:
    """A scheduler in the same process (tests, benchmarks, single-process runs)."""

    def __init__(self, scheduler: Curriculum) -> None:
        self.scheduler = scheduler

    def report(self, outcomes: EpisodeOutcomes) -> None:
        self.scheduler.update(outcomes)

    def poll(self, known_version: int) -> CurriculumDistribution | None:
        distribution = self.scheduler.distribution()
        return None if distribution.version == known_version else distribution

    def fetch(self, known_version: int = -1, timeout_s: float = 10.0) -> CurriculumDistribution | None:
        return self.poll(known_version)

    def flush(self) -> None:
        """Nothing is in flight in-process."""


class LocalTaskSampler:
    """Draws task ids from the local copy of the distribution.

    Tasks are pre-drawn in blocks of `block_size` (one vectorised searchsorted on
    the cached CDF) and handed out from the block; a new distribution discards
    the rest of the block. Callable with the task-sampler signature
    ``fn(num_resets, rng) -> int64 array``.
    """

    def __init__(self, distribution: CurriculumDistribution, block_size: int = 1024) -> None:
        self.block_size = int(block_size)
        self.set_distribution(distribution)

    def set_distribution(self, distribution: CurriculumDistribution) -> None:
        cdf = np.cumsum(distribution.probabilities)
        # Pin the end at exactly 1 so round-off never sends a draw past the last task.
        cdf /= cdf[-1]
        cdf[-1] = 1.0
        self.distribution = distribution
        self._cdf = cdf
        self._block = np.zeros(0, dtype=np.int64)
        self._next = 0

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """`num` fresh draws (no block); side='right' keeps zero-probability tasks out."""
        return np.searchsorted(self._cdf, rng.random(num), side="right").astype(np.int64)

    def __call__(self, num_resets: int, rng: np.random.Generator) -> np.ndarray:
        end = self._next + num_resets
        if end > self._block.shape[0]:
            self._block = self.sample(max(self.block_size, num_resets), rng)
            self._next, end = 0, num_resets
        tasks = self._block[self._next:end]
        self._next = end
        return tasks


class _CurriculumLink:
    """Shared by both wrappers: local distribution copy, outcome batching, refresh timing."""

    def __init__(
        self,
        client: CurriculumClient,
        num_tasks: int,
        num_items: int,
        bonus_size: float,
        refresh_every_episodes: int,
        refresh_every_seconds: float,
        report_every_episodes: int,
        report_every_seconds: float | None,
        evaluation: bool,
        initial_fetch_timeout_s: float,
        bonus_scope: np.ndarray | None = None,
        wait_for_curriculum: bool = False,
        milestone_serves: np.ndarray | None = None,
        max_bonus_per_episode: float | None = None,
    ) -> None:
        if refresh_every_episodes < 1 or report_every_episodes < 1:
            raise ValueError(
                f"refresh_every_episodes ({refresh_every_episodes}) and report_every_episodes "
                f"({report_every_episodes}) must be >= 1"
            )
        if not (np.isfinite(bonus_size) and bonus_size >= 0):
            raise ValueError(f"bonus_size must be a finite number >= 0, got {bonus_size}")
        self.client = client
        self.num_tasks = num_tasks
        self.num_items = num_items
        self.bonus_size = float(bonus_size)
        if max_bonus_per_episode is not None and not (np.isfinite(max_bonus_per_episode) and max_bonus_per_episode > 0):
            raise ValueError(f"max_bonus_per_episode must be a finite number > 0 or None, got {max_bonus_per_episode}")
        self.max_bonus_per_episode = None if max_bonus_per_episode is None else float(max_bonus_per_episode)
        if bonus_scope is not None and np.shape(bonus_scope) != (num_tasks, num_items):
            raise ValueError(f"bonus_scope must be a [tasks x items] = [{num_tasks} x {num_items}] matrix, "
                             f"got shape {np.shape(bonus_scope)}")
        self.bonus_scope = None if bonus_scope is None else np.asarray(bonus_scope, dtype=bool)
        if milestone_serves is not None:
            if np.ndim(milestone_serves) != 2 or np.shape(milestone_serves)[1] != num_items:
                raise ValueError(f"milestone_serves must be a [milestones x items] matrix with {num_items} items, "
                                 f"got shape {np.shape(milestone_serves)}")
            if self.bonus_scope is not None:
                raise ValueError("count milestones are paid in every episode; they do not combine with a goal scope")
        # [milestones, items] as uint8: which paying items each milestone serves, one product per refresh
        self.milestone_serves = None if milestone_serves is None else np.asarray(milestone_serves, dtype=np.uint8)
        self.refresh_every_episodes = int(refresh_every_episodes)
        self.refresh_every_seconds = float(refresh_every_seconds)
        self.report_every_episodes = int(report_every_episodes)
        self.wait_for_curriculum = bool(wait_for_curriculum)
        # Waiting makes a run reproducible: what the curriculum has absorbed at each refresh
        # then depends on episodes alone, so no timer may send or refresh.
        self.report_every_seconds = None if self.wait_for_curriculum else report_every_seconds
        self.evaluation = bool(evaluation)
        self.sampler = LocalTaskSampler(CurriculumDistribution.uniform(num_tasks, num_items))
        self._set_bonus(np.zeros(num_items, dtype=bool))
        self.refreshes = 0
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._pending_count = 0
        self._episodes_since_refresh = 0
        now = time.monotonic()
        self._last_refresh = now
        self._last_report = now
        first = client.fetch(-1, initial_fetch_timeout_s) if initial_fetch_timeout_s > 0 else client.poll(-1)
        if first is not None:
            self._install(first)

    @property
    def version(self) -> int:
        return self.sampler.distribution.version

    def _install(self, distribution: CurriculumDistribution) -> None:
        if distribution.probabilities.shape != (self.num_tasks,):
            raise ValueError(
                f"curriculum distribution covers {distribution.probabilities.shape[0]} tasks but the "
                f"environment has {self.num_tasks}; build the curriculum with the env's task_space.names"
            )
        if distribution.bonus_items.shape != (self.num_items,):
            raise ValueError(
                f"curriculum bonus set covers {distribution.bonus_items.shape[0]} items but the "
                f"environment has {self.num_items}; build the curriculum with the env's item_names"
            )
        self.sampler.set_distribution(distribution)
        self._set_bonus(distribution.bonus_items)
        self.refreshes += 1

    def bonus(self, items_obtained: np.ndarray | None, task: np.ndarray | int,
              milestones: np.ndarray | None = None, paid_so_far: np.ndarray | float = 0.0) -> np.ndarray | float:
        """bonus_size x number of newly obtained items in the bonus set (and, with a scope, among
        the prerequisites of the episode's goal ``task``), plus bonus_size x newly reached count
        milestones serving an item in the bonus set, per env; cut so that with the episode's
        bonus so far (`paid_so_far`) it never exceeds `max_bonus_per_episode`."""
        total: np.ndarray | float = 0.0
        if self.bonus_size == 0.0:
            return total
        # New items are rare per step: the cheap any() skips the product most of the time.
        if items_obtained is not None and items_obtained.any():
            if self.bonus_scope is None:
                total = items_obtained @ self._bonus_weights
            else:
                total = np.einsum("...i,...i->...", items_obtained, self._bonus_weights[task])
        if milestones is not None and self.milestone_serves is not None and milestones.any():
            total = total + milestones @ self._milestone_weights
        if self.max_bonus_per_episode is None or isinstance(total, float) and total == 0.0:
            return total
        return np.minimum(total, np.maximum(self.max_bonus_per_episode - paid_so_far, 0.0))

    def _set_bonus(self, bonus_items: np.ndarray) -> None:
        self.bonus_items = np.asarray(bonus_items)
        # float64 weights, one product per step: [items], or [tasks x items] with a goal scope
        weights = self.bonus_items * self.bonus_size
        self._bonus_weights = weights if self.bonus_scope is None else self.bonus_scope * weights
        if self.milestone_serves is not None:
            pays = (self.milestone_serves @ self.bonus_items.astype(np.uint8)) > 0
            self._milestone_weights = pays * self.bonus_size

    def finished(self, task, success, episode_return, length, items, bonus_return=None) -> None:
        """Queue finished episodes (arrays with a leading episode axis)."""
        if bonus_return is None:
            bonus_return = np.zeros(len(task))
        self._pending.append((task, success, episode_return, length, items, bonus_return))
        self._pending_count += len(task)
        self._episodes_since_refresh += len(task)
        if self._pending_count >= self.report_every_episodes:
            self.flush()

    def tick(self) -> None:
        """Called once per step: time-based report and refresh, episode-based refresh."""
        if self.wait_for_curriculum:
            if self._episodes_since_refresh >= self.refresh_every_episodes:
                self._episodes_since_refresh = 0
                self.refresh_now()
            return
        now = time.monotonic()
        if self._pending and self.report_every_seconds is not None and now - self._last_report >= self.report_every_seconds:
            self.flush()
        due = self._episodes_since_refresh >= self.refresh_every_episodes or now - self._last_refresh >= self.refresh_every_seconds
        # An answer in flight is collected at the first step after it arrives (one ray.wait with
        # timeout 0), not a whole refresh interval later.
        if due or getattr(self.client, "awaiting_distribution", False):
            if due:
                self._episodes_since_refresh = 0
                self._last_refresh = now
            distribution = self.client.poll(self.version)
            if distribution is not None and distribution.version != self.version:
                self._install(distribution)

    def refresh_now(self, timeout_s: float = 60.0) -> None:
        """Send every queued outcome, wait until the curriculum has absorbed them, and install
        the distribution that follows from them (the reproducible refresh)."""
        self.flush()
        client_flush = getattr(self.client, "flush", None)
        if client_flush is not None:
            client_flush()
        self._last_refresh = time.monotonic()
        distribution = self.client.fetch(self.version, timeout_s)
        if distribution is not None and distribution.version != self.version:
            self._install(distribution)

    def flush(self) -> None:
        """Send every queued outcome now."""
        self._last_report = time.monotonic()
        if not self._pending:
            return
        columns = list(zip(*self._pending))
        items = None if columns[4][0] is None else np.concatenate(columns[4], axis=0)
        outcomes = EpisodeOutcomes(
            task=np.concatenate(columns[0]).astype(np.int64, copy=False),
            success=np.concatenate(columns[1]),
            episode_return=np.concatenate(columns[2]).astype(np.float64, copy=False),
            length=np.concatenate(columns[3]).astype(np.int64, copy=False),
            items_obtained=items,
            evaluation=self.evaluation,
            bonus_return=np.concatenate(columns[5]).astype(np.float64, copy=False),
        )
        self._pending.clear()
        self._pending_count = 0
        self.client.report(outcomes)


def _task_family_env(env: Any) -> Any:
    base = env.unwrapped
    for name in ("set_task_sampler", "task_space"):
        if not hasattr(base, name):
            raise TypeError(
                f"{type(base).__name__} has no '{name}': the curriculum wrappers need a task-family env "
                "with set_task_sampler(fn), task_space and item_names"
            )
    return base


class CurriculumVectorWrapper(gym.vector.VectorWrapper):
    """Curriculum around a task-family `VectorEnv` (NEXT_STEP or SAME_STEP autoreset).

    Args:
        env: the vector env (e.g. SimonSaysVectorEnv).
        client: a `CurriculumClient` (`ActorCurriculumClient` for the Ray actor).
        bonus_size: reward per newly obtained item in the current bonus set (0 = no bonus).
        refresh_every_episodes: poll for a new distribution after this many finished episodes...
        refresh_every_seconds: ...or after this many seconds, whichever comes first.
        report_every_episodes: send outcomes in batches of (at least) this many episodes.
        report_every_seconds: also send whatever is queued after this long (None = never by time).
        evaluation: mark the reported outcomes as evaluation episodes.
        initial_fetch_timeout_s: wait this long for the first distribution at construction
            (0 = do not wait; start uniform until the first refresh).
        bonus_scope: optional bool ``[tasks x items]``: an item earns the bonus only in episodes
            whose goal needs it (`tasks.simon_says.goal_prerequisite_items`); None = in every episode.
        max_bonus_per_episode: the most bonus one episode can earn (None = no limit); with a
            goal worth 1, a limit below 1 keeps collecting items from paying more than finishing.
        milestone_serves: optional bool ``[milestones x items]`` (``CountMilestones.serves``): a
            count milestone the env reports in ``info["milestones_obtained"]`` earns the bonus
            while an item it serves is in the bonus set; None = milestones earn nothing.
        wait_for_curriculum: refresh by episodes only, and at each refresh wait until the
            curriculum has absorbed this wrapper's episodes (one round trip per
            `refresh_every_episodes`): the same seed then gives the same run.

    The reported `episode_return` is the environment's return without the bonus; the bonus
    paid in each episode is reported beside it (`bonus_return`).
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        client: CurriculumClient,
        bonus_size: float = 0.0,
        refresh_every_episodes: int = 64,
        refresh_every_seconds: float = 5.0,
        report_every_episodes: int = 32,
        report_every_seconds: float | None = 10.0,
        evaluation: bool = False,
        initial_fetch_timeout_s: float = 10.0,
        bonus_scope: np.ndarray | None = None,
        wait_for_curriculum: bool = False,
        milestone_serves: np.ndarray | None = None,
        max_bonus_per_episode: float | None = None,
    ) -> None:
        super().__init__(env)
        base = _task_family_env(env)
        self.num_tasks = len(base.task_space)
        self.num_items = len(getattr(base, "item_names", ()))
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"CurriculumVectorWrapper needs NEXT_STEP or SAME_STEP autoreset, got {mode}")
        self._same_step = mode == AutoresetMode.SAME_STEP
        self.link = _CurriculumLink(
            client, self.num_tasks, self.num_items, bonus_size, refresh_every_episodes,
            refresh_every_seconds, report_every_episodes, report_every_seconds, evaluation,
            initial_fetch_timeout_s, bonus_scope, wait_for_curriculum, milestone_serves, max_bonus_per_episode,
        )
        base.set_task_sampler(self.link.sampler)
        n = env.num_envs
        self._task = np.zeros(n, dtype=np.int64)
        self._return = np.zeros(n, dtype=np.float64)
        self._length = np.zeros(n, dtype=np.int64)
        self._success = np.zeros(n, dtype=bool)
        self._bonus_return = np.zeros(n, dtype=np.float64)
        self._items = np.zeros((n, self.num_items), dtype=bool)
        self._resetting = np.zeros(n, dtype=bool)

    @property
    def distribution(self) -> CurriculumDistribution:
        """The local copy the sampler draws from."""
        return self.link.sampler.distribution

    def _start(self, mask: np.ndarray, info: dict[str, Any]) -> None:
        if "task" not in info:
            raise KeyError("the env must report info['task'] on reset (task-family contract)")
        self._task[mask] = np.asarray(info["task"])[mask]
        self._return[mask] = 0.0
        self._bonus_return[mask] = 0.0
        self._length[mask] = 0
        self._success[mask] = False
        self._items[mask] = False

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        # Episodes cut short by an explicit reset are incomplete: dropped, not reported.
        self._start(np.ones(self.num_envs, dtype=bool), info)
        self._resetting[:] = False
        return obs, info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        resetting = self._resetting
        any_resetting = resetting.any()
        items = info.get("items_obtained")
        success = info.get("success")
        env_reward = np.asarray(reward)
        bonus = self.link.bonus(items, self._task, info.get("milestones_obtained"), self._bonus_return)
        # Accumulate for every env without masks, then restart the envs that were
        # resetting (NEXT_STEP: they returned a reset observation, not a step), which
        # discards whatever this call added for them.
        self._return += env_reward
        self._bonus_return += bonus
        self._length += 1
        if success is not None:
            self._success |= np.asarray(success, dtype=bool)
        if items is not None:
            self._items |= items
        done = np.asarray(terminated) | np.asarray(truncated)
        if any_resetting:
            self._start(resetting, info)
            done = done & ~resetting
            if not isinstance(bonus, float):
                bonus = np.where(resetting, 0.0, bonus)
        if not isinstance(bonus, float):
            reward = (env_reward + bonus).astype(env_reward.dtype, copy=False)
        if done.any():
            idx = np.flatnonzero(done)
            self.link.finished(
                self._task[idx].copy(), self._success[idx].copy(), self._return[idx].copy(),
                self._length[idx].copy(), self._items[idx].copy() if self.num_items and items is not None else None,
                self._bonus_return[idx].copy(),
            )
            if self._same_step:
                self._start(done, info)
        self._resetting = done if not self._same_step else np.zeros_like(done)
        self.link.tick()
        return obs, reward, terminated, truncated, info

    def flush(self) -> None:
        """Send queued outcomes now (call at shutdown or before reading metrics)."""
        self.link.flush()
        client_flush = getattr(self.link.client, "flush", None)
        if client_flush is not None:
            client_flush()

    def close(self, **kwargs: Any):
        # Also reached from VectorEnv.__del__, possibly on a half-built wrapper.
        if getattr(self, "link", None) is not None and not getattr(self, "closed", False):
            self.flush()
        return super().close(**kwargs)


class CurriculumWrapper(gym.Wrapper):
    """Curriculum around a single task-family env; same arguments as `CurriculumVectorWrapper`."""

    def __init__(
        self,
        env: gym.Env,
        client: CurriculumClient,
        bonus_size: float = 0.0,
        refresh_every_episodes: int = 64,
        refresh_every_seconds: float = 5.0,
        report_every_episodes: int = 32,
        report_every_seconds: float | None = 10.0,
        evaluation: bool = False,
        initial_fetch_timeout_s: float = 10.0,
        bonus_scope: np.ndarray | None = None,
        wait_for_curriculum: bool = False,
        milestone_serves: np.ndarray | None = None,
        max_bonus_per_episode: float | None = None,
    ) -> None:
        super().__init__(env)
        base = _task_family_env(env)
        self.num_tasks = len(base.task_space)
        self.num_items = len(getattr(base, "item_names", ()))
        self.link = _CurriculumLink(
            client, self.num_tasks, self.num_items, bonus_size, refresh_every_episodes,
            refresh_every_seconds, report_every_episodes, report_every_seconds, evaluation,
            initial_fetch_timeout_s, bonus_scope, wait_for_curriculum, milestone_serves, max_bonus_per_episode,
        )
        base.set_task_sampler(self.link.sampler)
        self._task = 0
        self._return = 0.0
        self._length = 0
        self._success = False
        self._bonus_return = 0.0
        self._items = np.zeros(self.num_items, dtype=bool)
        self._has_items = False

    @property
    def distribution(self) -> CurriculumDistribution:
        return self.link.sampler.distribution

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        if "task" not in info:
            raise KeyError("the env must report info['task'] on reset (task-family contract)")
        self._task = int(info["task"])
        self._return, self._length, self._success = 0.0, 0, False
        self._bonus_return = 0.0
        self._items[:] = False
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        items = info.get("items_obtained")
        self._return += float(reward)
        self._length += 1
        self._success |= bool(info.get("success", False))
        if items is not None:
            self._has_items = True
            self._items |= np.asarray(items, dtype=bool)
            if self.link.bonus_size:
                bonus = float(self.link.bonus(items, self._task, info.get("milestones_obtained"), self._bonus_return))
                self._bonus_return += bonus
                reward = reward + bonus
        if terminated or truncated:
            self.link.finished(
                np.array([self._task], np.int64), np.array([self._success]), np.array([self._return]),
                np.array([self._length], np.int64), self._items[None].copy() if self._has_items else None,
                np.array([self._bonus_return]),
            )
        self.link.tick()
        return obs, reward, terminated, truncated, info

    def flush(self) -> None:
        """Send queued outcomes now (call at shutdown or before reading metrics)."""
        self.link.flush()
        client_flush = getattr(self.link.client, "flush", None)
        if client_flush is not None:
            client_flush()

    def close(self):
        if getattr(self, "link", None) is not None:
            self.flush()
        return super().close()
