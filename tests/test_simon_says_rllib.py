"""RLlib's default PPO builds the Simon Says vector env from its id and trains on it (slow: starts Ray)."""

from __future__ import annotations

import pytest

import tasks.simon_says  # noqa: F401  (registers the gymnasium id)
from tasks.simon_says import ENV_ID, SimonSaysVectorEnv


@pytest.mark.slow
def test_rllib_ppo_uses_the_vector_entry_point(ray_session):
    from ray.rllib.algorithms.ppo import PPOConfig

    config = (
        PPOConfig()
        .environment(ENV_ID, env_config={"tasks": ["log", "planks", "crafting_table"], "horizon": 40})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=16, gym_env_vectorize_mode="vector_entry_point",
                     rollout_fragment_length=64)
        .training(train_batch_size_per_learner=1024, minibatch_size=256, num_epochs=1)
    )
    algo = config.build_algo()
    try:
        assert isinstance(algo.env_runner.env.unwrapped, SimonSaysVectorEnv)
        result = algo.train()
        assert result["env_runners"]["num_episodes"] > 0
    finally:
        algo.stop()
