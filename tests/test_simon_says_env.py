"""Simon Says techtree envs behave as gymnasium 1.x documents, and vector == single."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.simon_says import ENV_ID, SimonSaysEnv, SimonSaysVectorEnv, make_task_space
from tasks.simon_says import counter_rng
from tasks.simon_says.scripted import TechTreePlanner

TASKS = ["log", "crafting_table", "wooden_pickaxe", "stone_pickaxe", "iron_ingot", "diamond"]


def test_registered_single_and_vector_entry_points():
    single = gym.make(ENV_ID, tasks=TASKS, horizon=50)
    assert isinstance(single.unwrapped, SimonSaysEnv)
    vec = gym.make_vec(ENV_ID, num_envs=8, vectorization_mode="vector_entry_point", tasks=TASKS, horizon=50)
    assert isinstance(vec, SimonSaysVectorEnv)
    assert vec.num_envs == 8
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert isinstance(vec.single_action_space, gym.spaces.Discrete)
    assert vec.observation_space.shape == (8,) + vec.single_observation_space.shape
    assert vec.single_observation_space.dtype == np.float32


def test_passes_gymnasium_env_checker():
    check_env(SimonSaysEnv(tasks=TASKS, horizon=30), skip_render_check=True)


def test_observation_carries_the_task_and_info_has_the_contract_keys():
    env = SimonSaysVectorEnv(num_envs=6, tasks=TASKS)
    obs, info = env.reset(seed=1, options={"task": np.arange(6)})
    k = len(env.task_space)
    assert np.array_equal(obs[:, :k], np.eye(k, dtype=np.float32))
    assert info["task"].dtype == np.int64 and info["task"].tolist() == list(range(6))
    assert info["success"].shape == (6,) and info["success"].dtype == bool
    assert info["items_obtained"].shape == (6, len(env.item_names)) and info["items_obtained"].dtype == bool
    assert env.item_names[env.task_item_index[3]] == "stone_pickaxe"
    assert set(env.task_space.names) <= set(env.item_names)
    obs, reward, terminated, truncated, info = env.step(np.zeros(6, dtype=np.int64))
    assert obs.dtype == np.float32 and reward.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert set(info) == {"task", "success", "items_obtained"}


def test_items_obtained_marks_first_time_only_and_goal_gives_reward():
    env = SimonSaysVectorEnv(num_envs=1, tasks=["planks"])
    env.reset(seed=0)
    planner = TechTreePlanner(env.core)
    log = env.item_names.index("log")
    first_log_steps, rewards = [], []
    for t in range(100):
        _, reward, terminated, _, info = env.step(np.array([planner.act(0, "planks")]))
        rewards.append(reward[0])
        if info["items_obtained"][0, log]:
            first_log_steps.append(t)
        if terminated[0]:
            assert info["success"][0] and reward[0] == 1.0
            assert info["items_obtained"][0, env.item_names.index("planks")]
            break
    assert len(first_log_steps) == 1 and sum(rewards) == 1.0


def test_next_step_autoreset_ignores_the_action_and_returns_the_reset_observation():
    env = SimonSaysVectorEnv(num_envs=3, tasks=TASKS, horizon=5)
    env.reset(seed=0)
    explore = env.action_names.index("explore")
    for _ in range(4):
        env.step(np.full(3, explore))
    obs, reward, terminated, truncated, _ = env.step(np.full(3, explore))
    assert truncated.all() and not terminated.any()
    assert np.allclose(obs[:, env.observation_layout.time_left], 0.0)
    obs, reward, terminated, truncated, info = env.step(np.full(3, env.action_names.index("descend")))
    assert not (terminated | truncated).any() and (reward == 0).all()
    assert np.allclose(obs[:, env.observation_layout.time_left], 1.0)
    assert (obs[:, env.observation_layout.inventory] == 0).all()
    assert (env.core.level == 0).all() and (env.core.t == 0).all()
    assert not info["items_obtained"].any()


def test_terminated_on_success_then_autoreset_with_a_new_task():
    env = SimonSaysVectorEnv(num_envs=1, tasks=TASKS)
    env.reset(seed=3, options={"task": 0})  # "log"
    planner = TechTreePlanner(env.core)
    calls = []

    def sampler(n, rng):
        calls.append(n)
        return np.full(n, 2)

    env.set_task_sampler(sampler)
    for _ in range(50):
        obs, reward, terminated, _, info = env.step(np.array([planner.act(0, "log")]))
        if terminated[0]:
            break
    assert reward[0] == 1.0 and info["task"][0] == 0 and calls == []
    obs, reward, terminated, truncated, info = env.step(np.array([0]))
    assert calls == [1] and info["task"][0] == 2 and reward[0] == 0.0
    assert obs[0, 2] == 1.0 and obs[0, 0] == 0.0


def test_task_sampler_is_called_once_per_reset_batch():
    env = SimonSaysVectorEnv(num_envs=16, tasks=TASKS, horizon=3)
    calls = []

    def sampler(n, rng):
        calls.append(n)
        return rng.integers(0, len(TASKS), size=n)

    env.set_task_sampler(sampler)
    env.reset(seed=0)
    assert calls == [16]
    explore = np.full(16, env.action_names.index("explore"))
    for _ in range(4):  # 3 steps to truncation, then one autoreset step for all 16
        env.step(explore)
    assert calls == [16, 16]


def test_forced_tasks_and_bad_input():
    env = SimonSaysVectorEnv(num_envs=4, tasks=TASKS)
    _, info = env.reset(seed=0, options={"task": np.array([5, 4, 3, 2])})
    assert info["task"].tolist() == [5, 4, 3, 2]
    _, info = env.reset(options={"task": 1})
    assert info["task"].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match=r"options\['task'\].*0\.\.5"):
        env.reset(options={"task": 6})
    with pytest.raises(ValueError, match="action 9999 out of range"):
        env.step(np.array([0, 0, 0, 9999]))
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        SimonSaysVectorEnv(num_envs=0)
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        SimonSaysVectorEnv(num_envs=1, horizon=0)


def _rollout(env, seed, steps, actions):
    obs, info = env.reset(seed=seed, options={"task": 5})
    out = [obs]
    for a in actions[:steps]:
        obs, reward, terminated, truncated, info = env.step(a)
        out += [obs, reward, terminated, truncated, info["items_obtained"]]
    return out


def test_same_seed_same_trajectory_and_different_seed_different_world():
    env = SimonSaysVectorEnv(num_envs=32, tasks=TASKS, horizon=40)
    actions = np.random.default_rng(0).integers(0, env.single_action_space.n, size=(100, 32))
    a, b = _rollout(env, 7, 100, actions), _rollout(env, 7, 100, actions)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = _rollout(env, 8, 100, actions)
    assert not np.array_equal(a[0], c[0])  # different blocks nearby at the start


def test_sub_env_i_of_vector_seeded_s_equals_single_env_seeded_s_plus_i():
    n, horizon, seed, steps = 4, 25, 11, 80
    fixed_task = 5  # "diamond": never reached, so every episode runs to the horizon
    vec = SimonSaysVectorEnv(num_envs=n, tasks=TASKS, horizon=horizon)
    vec.set_task_sampler(lambda k, rng: np.full(k, fixed_task))
    planner = TechTreePlanner(vec.core)  # a policy that does things (mines, crafts, descends)
    singles = [SimonSaysEnv(tasks=TASKS, horizon=horizon) for _ in range(n)]
    v_obs, _ = vec.reset(seed=seed, options={"task": fixed_task})
    s_obs = [env.reset(seed=seed + i, options={"task": fixed_task})[0] for i, env in enumerate(singles)]
    assert np.array_equal(v_obs, np.stack(s_obs))
    rng = np.random.default_rng(0)
    single_done = [False] * n
    episodes_ended = 0
    for _ in range(steps):
        scripted = np.array([planner.act(i, "iron_pickaxe") for i in range(n)])
        actions = np.where(rng.random(n) < 0.3, rng.integers(0, vec.single_action_space.n, size=n), scripted)
        v_obs, v_rew, v_term, v_trunc, v_info = vec.step(actions)
        for i, env in enumerate(singles):
            if single_done[i]:  # the vector env autoresets this step; the single env is reset by hand
                obs, info = env.reset(options={"task": fixed_task})
                rew, term, trunc, got = 0.0, False, False, info["items_obtained"]
            else:
                obs, rew, term, trunc, info = env.step(actions[i])
                got = info["items_obtained"]
            single_done[i] = term or trunc
            episodes_ended += single_done[i]
            assert np.array_equal(obs, v_obs[i])
            assert (rew, term, trunc) == (v_rew[i], v_term[i], v_trunc[i])
            assert np.array_equal(got, v_info["items_obtained"][i])
    assert episodes_ended >= 2 * n  # the comparison went through autoresets


def test_counter_rng_streams_are_per_env():
    keys = counter_rng.env_keys(100, 5)
    assert all(counter_rng.env_keys(100 + i, 1)[0] == keys[i] for i in range(5))
    words = counter_rng.draws(keys, np.zeros(5, dtype=np.uint64), 1, 1000)
    # top 12 bits index the block table: roughly uniform over 4096 bins
    bins = np.bincount((words >> np.uint64(52)).astype(np.int64).ravel(), minlength=4096)
    assert bins.sum() == 5000 and bins.max() < 12


def test_copy_false_shares_the_buffer_copy_true_does_not():
    env = SimonSaysVectorEnv(num_envs=2, tasks=TASKS, copy=False)
    obs, _ = env.reset(seed=0)
    obs2, *_ = env.step(np.zeros(2, dtype=np.int64))
    assert obs is obs2
    env = SimonSaysVectorEnv(num_envs=2, tasks=TASKS)
    obs, _ = env.reset(seed=0)
    before = obs.copy()
    env.step(np.zeros(2, dtype=np.int64))
    assert np.array_equal(obs, before)


def test_default_task_space_is_every_obtainable_item():
    env = SimonSaysVectorEnv(num_envs=2)
    assert env.task_space == make_task_space()
    assert env.single_observation_space.shape[0] > 2 * len(env.task_space)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), scripted_share=st.floats(0.0, 1.0), horizon=st.integers(5, 60))
def test_invariants_under_mixed_random_and_scripted_play(seed, scripted_share, horizon):
    n = 8
    env = SimonSaysVectorEnv(num_envs=n, tasks=TASKS, horizon=horizon)
    env.reset(seed=seed)
    planner = TechTreePlanner(env.core)
    rng = np.random.default_rng(seed)
    marked = np.zeros((n, len(env.item_names)), dtype=bool)
    autoreset = np.zeros(n, dtype=bool)
    for _ in range(80):
        scripted = np.array([planner.act(i, "iron_pickaxe") for i in range(n)])
        random = rng.integers(0, env.single_action_space.n, size=n)
        obs, reward, terminated, truncated, info = env.step(np.where(rng.random(n) < scripted_share, scripted, random))
        assert (env.core.inventory >= 0).all()
        assert env.observation_space.contains(obs)
        got = info["items_obtained"]
        assert (env.core.inventory[:, :-1][got] > 0).all()  # a newly obtained item is held
        marked[autoreset] = False
        assert not (marked & got).any()  # at most once per episode
        marked |= got
        assert np.array_equal(reward == 1.0, info["success"]) and np.array_equal(terminated, info["success"])
        autoreset = terminated | truncated
