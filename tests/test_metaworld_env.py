"""Meta-World MT10 as a task family: the one-hot, success vs Meta-World's own flag, the contract."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("metaworld", reason="needs the 'metaworld' extra")

import gymnasium as gym  # noqa: E402

from tasks.metaworld import ENV_ID, MT10, make_task_space, task_metadata  # noqa: E402
from tasks.metaworld.envs import STATE_DIM, MetaWorldVectorEnv, benchmark  # noqa: E402


def test_task_space_and_metadata():
    assert make_task_space("MT10").names == MT10
    assert len(make_task_space("MT50")) == 50
    assert make_task_space("MT10", ["push-v3", "reach-v3"]).names == ("reach-v3", "push-v3")
    meta = task_metadata(MT10)
    assert meta.shape == (10, 64)
    np.testing.assert_allclose(np.linalg.norm(meta, axis=1), 1.0, rtol=1e-6)
    # open/close of the same object share words, so their sentences overlap more than unrelated tasks
    i, j, k = MT10.index("window-open-v3"), MT10.index("window-close-v3"), MT10.index("reach-v3")
    assert meta[i] @ meta[j] > abs(meta[i] @ meta[k])


def test_one_hot_matches_task_and_vector_entry_point():
    env = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", horizon=3)
    assert env.single_observation_space.shape == (STATE_DIM + 10,)
    obs, info = env.reset(seed=0, options={"task": [0, 3, 7, 9]})
    for _ in range(5):  # crosses an autoreset (horizon 3), tasks redrawn by the uniform sampler
        np.testing.assert_array_equal(obs[:, STATE_DIM:].argmax(1), info["task"])
        np.testing.assert_array_equal(obs[:, STATE_DIM:].sum(1), 1.0)
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated.any()
    env.close()


@pytest.mark.parametrize("task", ["reach-v3", "drawer-close-v3", "button-press-topdown-v3"])
def test_success_matches_metaworld_step_by_step(task):
    """Same goal, same scripted actions: observation and success equal Meta-World's own env's."""
    import metaworld.policies as scripted

    policy = {"reach-v3": scripted.SawyerReachV3Policy, "drawer-close-v3": scripted.SawyerDrawerCloseV3Policy,
              "button-press-topdown-v3": scripted.SawyerButtonPressTopdownV3Policy}[task]()
    venv = MetaWorldVectorEnv(num_envs=1, task_set="MT10", horizon=120)
    t = venv.task_space.index(task)
    obs, info = venv.reset(seed=1, options={"task": t})
    reference = benchmark("MT10", 0).train_classes[task]()
    reference.set_task(venv.goal(0))
    ref_obs, _ = reference.reset()
    np.testing.assert_allclose(obs[0, :STATE_DIM], ref_obs, rtol=1e-6, atol=1e-6)
    successes = 0
    for _ in range(120):
        action = policy.get_action(ref_obs)
        obs, reward, _, truncated, info = venv.step(action[None])
        ref_obs, ref_reward, _, _, ref_info = reference.step(action)
        assert bool(info["success"][0]) == bool(ref_info["success"])
        assert info["task"][0] == t and obs[0, STATE_DIM + t] == 1.0
        # hand, gripper and goal to float32 precision; the object's position to 1e-3, its
        # quaternion not at all (a resting object's orientation jitters between two MuJoCo instances)
        np.testing.assert_allclose(obs[0, :4], ref_obs[:4], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(obs[0, 36:STATE_DIM], ref_obs[36:], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(obs[0, 4:7], ref_obs[4:7], atol=1e-3)
        assert reward[0] == pytest.approx(ref_reward, rel=1e-5, abs=1e-5)
        successes += bool(ref_info["success"])
    assert successes > 0, "the scripted policy should succeed within 120 steps"
    assert truncated[0]


def test_task_sampler_is_used_at_reset():
    venv = MetaWorldVectorEnv(num_envs=3, tasks=["reach-v3", "push-v3"], horizon=1)
    venv.set_task_sampler(lambda n, rng: np.ones(n, dtype=np.int64))
    _, info = venv.reset(seed=0)
    assert (info["task"] == 1).all()
    venv.step(np.zeros((3, 4)))
    venv.set_task_sampler(lambda n, rng: np.zeros(n, dtype=np.int64))
    _, _, _, _, info = venv.step(np.zeros((3, 4)))  # every slot truncated at horizon 1 -> resets now
    assert (info["task"] == 0).all()
    venv.close()


def test_missing_extra_names_the_extra(monkeypatch):
    import sys

    from orchestrator.config import ConfigError, load_config
    from tasks.metaworld import MissingExtraError, require_metaworld

    monkeypatch.setitem(sys.modules, "metaworld", None)  # what an environment without the extra sees
    with pytest.raises(MissingExtraError, match=r"pip install 'mto\[metaworld\]'"):
        require_metaworld()
    with pytest.raises(ConfigError, match=r"task.family: .*'metaworld' extra"):
        load_config("configs/mt10_sac.yaml")


@pytest.mark.slow
def test_mt50_one_hot_and_goals():
    venv = MetaWorldVectorEnv(num_envs=2, task_set="MT50", horizon=2)
    obs, info = venv.reset(seed=0, options={"task": [0, 49]})
    assert obs.shape == (2, STATE_DIM + 50)
    assert obs[:, STATE_DIM:].argmax(1).tolist() == [0, 49] == info["task"].tolist()
    assert [venv.goal(i).env_name for i in range(2)] == ["assembly-v3", "window-close-v3"]
    venv.close()
