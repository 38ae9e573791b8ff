"""Crafter backend: achievements as tasks, pixels + task id, the same info keys.

Skipped when Crafter is not installed (``pip install 'mto[crafter]'``), except the test of
the error shown without it.
"""

from __future__ import annotations

import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest

from tasks.simon_says import ENV_ID, MissingExtraError, SimonSaysEnv, SimonSaysVectorEnv, make_task_space, prerequisites
from tasks.task_space import UnknownTaskError

HAVE_CRAFTER = importlib.util.find_spec("crafter") is not None
needs_crafter = pytest.mark.skipif(not HAVE_CRAFTER, reason="crafter not installed: pip install 'mto[crafter]'")
AREA = (16, 16)  # small worlds: Crafter's world generation dominates test time


def test_without_crafter_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "crafter", None)  # makes `import crafter` fail as if absent
    with pytest.raises(MissingExtraError, match=r"pip install 'mto\[crafter\]'"):
        make_task_space(backend="crafter")
    with pytest.raises(MissingExtraError, match=r"mto\[crafter\]"):
        SimonSaysVectorEnv(num_envs=2, backend="crafter")


@needs_crafter
def test_achievements_are_the_tasks_with_depth_from_crafters_rules():
    space = make_task_space(backend="crafter")
    assert len(space) == 22
    depth = dict(zip(space.names, space.depth))
    # wood 0 -> table 1 -> wood pickaxe 2 -> stone 3 -> stone pickaxe 4 -> iron 5 -> iron pickaxe 6 -> diamond 7
    assert [depth[a] for a in ("collect_wood", "place_table", "make_wood_pickaxe", "collect_stone",
                               "make_stone_pickaxe", "collect_iron", "make_iron_pickaxe", "collect_diamond")] == list(range(8))
    pre = prerequisites(backend="crafter")
    assert pre["make_iron_pickaxe"] == {"collect_wood", "collect_coal", "collect_iron", "place_table", "place_furnace"}
    with pytest.raises(UnknownTaskError, match=r"'collect_woods'.*'collect_wood'"):
        make_task_space(["collect_woods"], backend="crafter")


@needs_crafter
def test_single_env_observation_and_info():
    env = gym.make(ENV_ID, backend="crafter", tasks=["collect_wood", "place_table"], horizon=20, area=AREA)
    obs, info = env.reset(seed=0, options={"task": 1})
    assert obs.shape == (2 + 64 * 64 * 3,) and obs.dtype == np.float32
    assert obs[:2].tolist() == [0.0, 1.0]
    assert env.observation_space.contains(obs)
    assert set(info) == {"task", "success", "items_obtained"} and info["task"] == 1
    assert info["items_obtained"].shape == (22,)
    assert env.action_space.n == 17
    truncated = False
    for _ in range(20):
        obs, reward, terminated, truncated, info = env.step(0)  # noop
        assert reward == 0.0 or info["success"]
        if terminated or truncated:
            break
    assert truncated


@needs_crafter
def test_seeded_worlds_repeat_and_vector_matches_single():
    vec = SimonSaysVectorEnv(num_envs=2, backend="crafter", horizon=10, area=AREA)
    single = [SimonSaysEnv(backend="crafter", horizon=10, area=AREA) for _ in range(2)]
    v_obs, _ = vec.reset(seed=5, options={"task": 0})
    s_obs = [env.reset(seed=5 + i, options={"task": 0})[0] for i, env in enumerate(single)]
    assert np.array_equal(v_obs, np.stack(s_obs))
    assert not np.array_equal(v_obs[0], v_obs[1])  # different seeds, different worlds
    actions = np.random.default_rng(0).integers(0, 17, size=(6, 2))
    for a in actions:
        v_obs, v_rew, v_term, v_trunc, v_info = vec.step(a)
        for i, env in enumerate(single):
            obs, rew, term, trunc, info = env.step(int(a[i]))
            assert np.array_equal(obs, v_obs[i]) and rew == v_rew[i] and term == v_term[i]
            assert np.array_equal(info["items_obtained"], v_info["items_obtained"][i])


@needs_crafter
def test_vector_autoresets_next_step():
    vec = gym.make_vec(ENV_ID, num_envs=1, vectorization_mode="vector_entry_point", backend="crafter", horizon=3,
                       area=AREA)
    calls = []
    vec.set_task_sampler(lambda n, rng: (calls.append(n), np.full(n, 4))[1])
    vec.reset(seed=0)
    for _ in range(3):
        _, _, terminated, truncated, _ = vec.step(np.zeros(1, dtype=np.int64))
    assert (truncated | terminated).all()
    obs, reward, terminated, truncated, info = vec.step(np.zeros(1, dtype=np.int64))
    assert calls == [1, 1] and info["task"].tolist() == [4] and (reward == 0).all()
    assert not (terminated | truncated).any()
