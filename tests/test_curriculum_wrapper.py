"""The env-side curriculum wrappers on a real gymnasium VectorEnv that follows the task-family contract."""

from __future__ import annotations

from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from curricula import EpisodeOutcomes, LearningProgressCurriculum, UniformCurriculum
from curricula.outcomes import CurriculumDistribution
from orchestrator.rl.curriculum_wrapper import (
    CurriculumClient,
    CurriculumVectorWrapper,
    CurriculumWrapper,
    LocalCurriculumClient,
    LocalTaskSampler,
)

ITEMS = ("log", "planks", "stick", "wooden_pickaxe")
TASKS = ("log", "planks", "stick")


class ChainVectorEnv(gym.vector.VectorEnv):
    """A tiny tech tree as a native VectorEnv: action i obtains item i once items 0..i-1 are held.

    Follows the task-family contract: one-hot goal in obs[:, :num_tasks],
    set_task_sampler called once per reset/autoreset batch, info["task"],
    info["success"], info["items_obtained"], NEXT_STEP autoreset, reward 1 on success.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 4, tasks: Sequence[str] = TASKS, horizon: int = 6, same_step: bool = False) -> None:
        self.same_step = same_step
        if same_step:
            self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self.num_envs = num_envs
        self.task_names = tuple(tasks)
        self.task_space = self.task_names  # len() and iteration are all the wrappers need
        self.item_names = ITEMS
        self.task_item_index = np.array([ITEMS.index(t) for t in self.task_names], np.int64)
        self.horizon = horizon
        n_obs = len(self.task_names) + len(ITEMS)
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (n_obs,), np.float32)
        self.single_action_space = gym.spaces.Discrete(len(ITEMS))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._sampler: Callable[[int, np.random.Generator], np.ndarray] = (
            lambda k, rng: rng.integers(0, len(self.task_names), k)
        )
        self.sampler_calls: list[int] = []
        self._rng = np.random.default_rng(0)
        self._task = np.zeros(num_envs, np.int64)
        self._held = np.zeros((num_envs, len(ITEMS)), bool)
        self._t = np.zeros(num_envs, np.int64)
        self._autoreset = np.zeros(num_envs, bool)

    def set_task_sampler(self, fn: Callable[[int, np.random.Generator], np.ndarray]) -> None:
        self._sampler = fn

    def _new_tasks(self, mask: np.ndarray, forced=None) -> None:
        k = int(mask.sum())
        if forced is not None:
            self._task[mask] = np.broadcast_to(np.asarray(forced, np.int64), (self.num_envs,))[mask]
        elif k:
            self.sampler_calls.append(k)
            self._task[mask] = self._sampler(k, self._rng)
        self._held[mask] = False
        self._t[mask] = 0

    def _obs(self) -> np.ndarray:
        goal = np.eye(len(self.task_names), dtype=np.float32)[self._task]
        return np.concatenate([goal, self._held.astype(np.float32)], axis=1)

    def _info(self, success: np.ndarray, new_items: np.ndarray) -> dict:
        return {"task": self._task.copy(), "success": success, "items_obtained": new_items}

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        forced = (options or {}).get("task")
        self._new_tasks(np.ones(self.num_envs, bool), forced)
        self._autoreset[:] = False
        empty = np.zeros((self.num_envs, len(ITEMS)), bool)
        return self._obs(), self._info(np.zeros(self.num_envs, bool), empty)

    def step(self, actions):
        actions = np.asarray(actions)
        resetting = self._autoreset.copy()
        if resetting.any():
            self._new_tasks(resetting)
        live = ~resetting
        rows = np.arange(self.num_envs)
        allowed = np.array([self._held[i, : actions[i]].all() for i in rows]) & live
        new_items = np.zeros_like(self._held)
        new_items[rows, actions] = allowed & ~self._held[rows, actions]
        self._held |= new_items
        self._t[live] += 1
        success = self._held[rows, self.task_item_index[self._task]] & new_items[rows, self.task_item_index[self._task]]
        terminated = success & live
        truncated = (self._t >= self.horizon) & ~terminated & live
        reward = terminated.astype(np.float64)
        done = terminated | truncated
        if self.same_step:  # reset finished envs now; info["task"] then names the new episode's goal
            info = self._info(success, new_items)
            if done.any():
                self._new_tasks(done)
                info["task"] = self._task.copy()
            return self._obs(), reward, terminated, truncated, info
        self._autoreset = done
        return self._obs(), reward, terminated, truncated, self._info(success, new_items)


class ChainEnv(gym.Env):
    """Single-env version (contract: same info keys without the batch dim)."""

    def __init__(self, tasks: Sequence[str] = TASKS, horizon: int = 6) -> None:
        self.vec = ChainVectorEnv(1, tasks, horizon)
        self.task_space = self.vec.task_space
        self.item_names = ITEMS
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space

    def set_task_sampler(self, fn) -> None:
        self.vec.set_task_sampler(fn)

    def reset(self, *, seed=None, options=None):
        obs, info = self.vec.reset(seed=seed, options=options)
        return obs[0], {k: v[0] for k, v in info.items()}

    def step(self, action):
        obs, reward, term, trunc, info = self.vec.step(np.array([action]))
        self.vec._autoreset[:] = False  # a single env is reset by its caller
        return obs[0], float(reward[0]), bool(term[0]), bool(trunc[0]), {k: v[0] for k, v in info.items()}


def chain_policy(obs: np.ndarray, num_tasks: int = len(TASKS)) -> np.ndarray:
    """Obtains the next missing item: reaches goal item i in i + 1 steps."""
    held = obs[:, num_tasks:] > 0.5
    return np.argmin(held, axis=1)


class RecordingClient(LocalCurriculumClient):
    """The in-process client, counting calls (to check nothing is asked per reset)."""

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.reports: list[EpisodeOutcomes] = []
        self.polls = 0

    def report(self, outcomes):
        self.reports.append(outcomes)
        super().report(outcomes)

    def poll(self, known_version):
        self.polls += 1
        return super().poll(known_version)


# -- the task sampler ----------------------------------------------------------------------

def test_sampler_follows_the_distribution_and_never_picks_zero_probability_tasks():
    dist = CurriculumDistribution(np.array([0.5, 0.0, 0.2, 0.3, 0.0]), np.zeros(0, bool), 3)
    sampler = LocalTaskSampler(dist, block_size=1000)
    rng = np.random.default_rng(1)
    draws = np.concatenate([sampler(k, rng) for k in [1, 7, 64, 3] * 2500])
    counts = np.bincount(draws, minlength=5)
    assert counts[1] == 0 and counts[4] == 0
    freq = counts / counts.sum()
    assert freq == pytest.approx([0.5, 0, 0.2, 0.3, 0], abs=0.01)
    assert draws.dtype == np.int64


def test_sampler_switches_immediately_on_a_new_distribution():
    sampler = LocalTaskSampler(CurriculumDistribution(np.array([1.0, 0.0]), np.zeros(0, bool), 0))
    rng = np.random.default_rng(0)
    assert set(sampler(10, rng).tolist()) == {0}
    sampler.set_distribution(CurriculumDistribution(np.array([0.0, 1.0]), np.zeros(0, bool), 1))
    assert set(sampler(10, rng).tolist()) == {1}
    assert sampler(5000, rng).shape == (5000,)  # larger than a block


def test_local_client_is_a_curriculum_client():
    assert isinstance(LocalCurriculumClient(UniformCurriculum(TASKS)), CurriculumClient)


# -- the vector wrapper ---------------------------------------------------------------------

def run(env, steps: int, seed: int = 0):
    obs, info = env.reset(seed=seed)
    rewards = []
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(chain_policy(obs))
        rewards.append(reward)
    return np.array(rewards)


def test_vector_wrapper_reports_each_finished_episode_once():
    scheduler = UniformCurriculum(TASKS, ITEMS)
    client = RecordingClient(scheduler)
    env = CurriculumVectorWrapper(ChainVectorEnv(4), client, report_every_episodes=5, refresh_every_episodes=8)
    obs, info = env.reset(seed=0, options={"task": np.array([0, 1, 2, 2])})
    expected = {0: 1, 1: 2, 2: 3}  # the chain policy reaches goal i in i + 1 steps
    for _ in range(40):
        obs, reward, term, trunc, info = env.step(chain_policy(obs))
    env.flush()
    sent = EpisodeOutcomes.concat(client.reports)
    assert len(sent) > 10
    assert sent.success.all()  # the chain policy always succeeds
    assert [int(n) for n in sent.length] == [expected[int(t)] for t in sent.task]
    assert sent.episode_return == pytest.approx(np.ones(len(sent)))
    # items_obtained is the union over the episode: exactly the chain up to the goal
    for t, items in zip(sent.task, sent.items_obtained):
        assert items.tolist() == [i <= t for i in range(len(ITEMS))]
    assert scheduler.episodes.sum() == len(sent)
    assert all(len(r) >= 5 for r in client.reports[:-1])  # batched
    # The env asked its sampler once per autoreset batch; the client was polled far less than that.
    assert client.polls <= len(sent) // 8 + 2
    assert len(env.env.sampler_calls) > client.polls


def test_truncated_episodes_are_reported_as_failures():
    scheduler = UniformCurriculum(TASKS, ITEMS)
    client = RecordingClient(scheduler)
    env = CurriculumVectorWrapper(ChainVectorEnv(2, horizon=3), client, report_every_episodes=1)
    env.reset(seed=0, options={"task": np.array([2, 2])})
    for _ in range(3):
        env.step(np.array([3, 3]))  # never allowed: nothing is obtained
    env.flush()
    sent = EpisodeOutcomes.concat(client.reports)
    assert sent.task.tolist() == [2, 2] and not sent.success.any()
    assert sent.length.tolist() == [3, 3] and sent.episode_return.tolist() == [0.0, 0.0]
    assert scheduler.estimates.measurements[2] == 2 and scheduler.estimates.success_rate[2] == 0.0


def test_bonus_is_added_for_new_bonus_items_only_on_real_steps():
    scheduler = UniformCurriculum(TASKS, ITEMS, bonus="static")
    env = CurriculumVectorWrapper(ChainVectorEnv(1), LocalCurriculumClient(scheduler), bonus_size=0.25)
    obs, _ = env.reset(options={"task": np.array([2])})
    rewards = []
    for _ in range(4):  # log, planks, stick (goal), then the autoreset step
        obs, reward, *_ = env.step(chain_policy(obs))
        rewards.append(float(reward[0]))
    assert rewards == pytest.approx([0.25, 0.25, 1.25, 0.0])


def test_goal_scoped_bonus_pays_only_for_the_goals_prerequisites():
    scheduler = UniformCurriculum(TASKS, ITEMS, bonus="static")
    # [task x item]: "stick" needs log and planks; "planks" needs log; "log" needs nothing.
    scope = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], bool)
    env = CurriculumVectorWrapper(ChainVectorEnv(3), LocalCurriculumClient(scheduler), bonus_size=0.25,
                                  bonus_scope=scope)
    obs, _ = env.reset(options={"task": np.array([2, 1, 0])})
    first = []
    for _ in range(2):  # log, then planks: the stick episode is paid for both, planks' only for log
        obs, reward, *_ = env.step(chain_policy(obs))
        first.append(reward.tolist())
    # env 2's goal is log: it succeeds at once (1.0, no bonus) and autoresets on the 2nd call (0.0).
    assert first == [pytest.approx([0.25, 0.25, 1.0]), pytest.approx([0.25, 1.0, 0.0])]
    with pytest.raises(ValueError, match=r"bonus_scope must be a \[tasks x items\] = \[3 x 4\]"):
        CurriculumVectorWrapper(ChainVectorEnv(3), LocalCurriculumClient(scheduler), bonus_scope=scope[:2])


def test_goal_prerequisite_items_known_answer():
    from tasks.simon_says import goal_prerequisite_items, make_task_space

    items = make_task_space(None).names
    scope = goal_prerequisite_items(["log", "wooden_pickaxe", "stone_pickaxe"], items)
    named = [{items[i] for i in np.flatnonzero(row)} for row in scope]
    assert named == [set(), {"log", "planks", "stick", "crafting_table"},
                     {"log", "planks", "stick", "crafting_table", "wooden_pickaxe", "cobblestone"}]


def test_dynamic_bonus_stops_for_items_the_agent_masters():
    scheduler = LearningProgressCurriculum(TASKS, ITEMS, bonus={"mode": "dynamic", "threshold": 0.5, "items": "all",
                                                                "non_task_items": "always"}, alpha_fast=1.0)
    env = CurriculumVectorWrapper(ChainVectorEnv(1), LocalCurriculumClient(scheduler), bonus_size=0.5,
                                  report_every_episodes=1, refresh_every_episodes=1)
    assert env.distribution.bonus_items.all()
    obs, _ = env.reset(options={"task": np.array([0])})
    obs, reward, *_ = env.step(chain_policy(obs))  # obtains "log", the goal
    assert float(reward[0]) == pytest.approx(1.5)
    env.step(chain_policy(obs))  # autoreset step: the refresh happens after the report
    # "log" now has success rate 1 as a goal, so it no longer earns the bonus.
    assert env.distribution.bonus_items.tolist() == [False, True, True, True]


def test_wrapper_samples_from_the_curriculum_distribution():
    scheduler = UniformCurriculum(TASKS, ITEMS)
    scheduler._probabilities = np.array([0.0, 0.0, 1.0])  # pin a distribution for this test
    scheduler._distribution = CurriculumDistribution(scheduler._probabilities, np.zeros(4, bool), 7)
    env = CurriculumVectorWrapper(ChainVectorEnv(3), LocalCurriculumClient(scheduler))
    obs, info = env.reset(seed=0)
    assert info["task"].tolist() == [2, 2, 2]
    assert env.distribution.version == 7


def test_refresh_after_k_episodes_picks_up_a_new_version():
    scheduler = LearningProgressCurriculum(TASKS, ITEMS)
    client = RecordingClient(scheduler)
    env = CurriculumVectorWrapper(ChainVectorEnv(4), client, report_every_episodes=4,
                                  refresh_every_episodes=4, refresh_every_seconds=3600)
    assert env.distribution.version == 0
    run(env, 30)
    assert scheduler.distribution().version > 0
    assert env.link.refreshes > 1 and env.distribution.version > 0


def test_wrapper_rejects_a_curriculum_for_other_tasks():
    scheduler = UniformCurriculum(["a", "b"], ITEMS)
    with pytest.raises(ValueError, match="covers 2 tasks but the environment has 3"):
        CurriculumVectorWrapper(ChainVectorEnv(2), LocalCurriculumClient(scheduler))
    scheduler = UniformCurriculum(TASKS)  # items default to the 3 task names; env has 4 items
    with pytest.raises(ValueError, match="covers 3 items but the environment has 4"):
        CurriculumVectorWrapper(ChainVectorEnv(2), LocalCurriculumClient(scheduler))


def test_non_task_family_env_is_refused_with_a_clear_message():
    env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with pytest.raises(TypeError, match="has no 'set_task_sampler'"):
        CurriculumVectorWrapper(env, LocalCurriculumClient(UniformCurriculum(TASKS)))


# -- the single-env wrapper ------------------------------------------------------------------

def test_single_env_wrapper_reports_and_adds_bonus():
    scheduler = UniformCurriculum(TASKS, ITEMS, bonus="static")
    client = RecordingClient(scheduler)
    env = CurriculumWrapper(ChainEnv(), client, bonus_size=0.1, report_every_episodes=2)
    total = []
    for episode in range(4):
        obs, info = env.reset(seed=episode)
        done, ret = False, 0.0
        while not done:
            obs, reward, term, trunc, info = env.step(int(chain_policy(obs[None])[0]))
            ret += reward
            done = term or trunc
        total.append((int(info["task"]), ret))
    env.flush()
    sent = EpisodeOutcomes.concat(client.reports)
    assert sent.task.tolist() == [t for t, _ in total]
    assert sent.success.all() and sent.episode_return.tolist() == [1.0] * 4
    for task, ret in total:  # 1 for the goal + 0.1 per item obtained on the way (task + 1 items)
        assert ret == pytest.approx(1.0 + 0.1 * (task + 1))
    assert scheduler.episodes.sum() == 4


# -- against the real Simon Says env ----------------------------------------------------------
# (It ships with the package: a failure to build it is a failure, not a skip.)

def test_simon_says_vector_env_under_the_wrapper():
    from tasks import simon_says

    env = gym.make_vec(simon_says.ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", horizon=20)
    base = env.unwrapped
    scheduler = LearningProgressCurriculum(list(base.task_space.names), list(base.item_names), bonus="dynamic")
    client = RecordingClient(scheduler)
    wrapped = CurriculumVectorWrapper(env, client, bonus_size=0.1, report_every_episodes=4)
    obs, info = wrapped.reset(seed=0)
    wrapped.action_space.seed(0)
    for _ in range(60):
        obs, reward, term, trunc, info = wrapped.step(wrapped.action_space.sample())
    wrapped.flush()
    sent = EpisodeOutcomes.concat(client.reports) if client.reports else EpisodeOutcomes.empty()
    assert len(sent) >= 4  # horizon 20, 60 steps, 4 envs: at least 8 episodes ended
    assert scheduler.episodes.sum() == len(sent)
    assert (sent.length <= 20).all()
    wrapped.close()


def test_simon_says_single_env_under_the_wrapper():
    from tasks import simon_says

    env = gym.make(simon_says.ENV_ID, tasks=["log", "planks", "dirt"], horizon=10)
    base = env.unwrapped
    scheduler = UniformCurriculum(list(base.task_space.names), list(base.item_names), bonus="static")
    client = RecordingClient(scheduler)
    wrapped = CurriculumWrapper(env, client, bonus_size=0.1, report_every_episodes=1)
    episodes = 0
    for seed in range(3):
        wrapped.reset(seed=seed)
        done = False
        while not done:
            _, _, term, trunc, _ = wrapped.step(wrapped.action_space.sample())
            done = term or trunc
        episodes += 1
    wrapped.flush()
    assert scheduler.episodes.sum() == episodes == len(EpisodeOutcomes.concat(client.reports))


def test_same_step_autoreset_is_tracked_too():
    scheduler = UniformCurriculum(TASKS, ITEMS)
    client = RecordingClient(scheduler)
    env = CurriculumVectorWrapper(ChainVectorEnv(4, same_step=True), client, report_every_episodes=1)
    obs, _ = env.reset(seed=0)
    for _ in range(30):
        obs, *_ = env.step(chain_policy(obs))
    env.flush()
    sent = EpisodeOutcomes.concat(client.reports)
    assert len(sent) >= 30 and sent.success.all()
    assert [int(n) for n in sent.length] == [int(t) + 1 for t in sent.task]


def test_evaluation_wrapper_reports_evaluation_episodes():
    scheduler = LearningProgressCurriculum(TASKS, ITEMS, success_source="evaluation", evaluation_interval_steps=100)
    env = CurriculumVectorWrapper(ChainVectorEnv(3), LocalCurriculumClient(scheduler), evaluation=True,
                                  report_every_episodes=3)
    obs, _ = env.reset(options={"task": np.array([0, 1, 2])})
    for _ in range(3):
        obs, *_ = env.step(chain_policy(obs))
    env.flush()
    assert scheduler.evaluation_episodes.tolist() == [1, 1, 1] and scheduler.episodes.sum() == 0
    assert scheduler.estimates.success_rate.tolist() == [1.0, 1.0, 1.0]
