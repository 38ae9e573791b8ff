"""Multi-task SAC's training step: transitions replayed from flat arrays, the update count by
training intensity, lean squashed-Gaussian sampling equal to RLlib's pipeline, and sampling
overlapped with learning (real Ray, real RLlib SAC)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.rl.sac_training import TransitionReplayBuffer, transition_columns, updates_due
from orchestrator.rl.vector_sampling import PackedEpisodes, episode_from_arrays

REPO = Path(__file__).resolve().parent.parent


def _chunk(ep_id: str, first_obs: float, length: int, terminated: bool = False, truncated: bool = False):
    """A chunk whose observation rows are first_obs, first_obs + 1, ... (L + 1 of them), action t = obs t."""
    obs = (first_obs + np.arange(length + 1, dtype=np.float32))[:, None].repeat(2, axis=1)
    actions = obs[:-1, :1] * 10
    rewards = np.arange(length, dtype=np.float32) + first_obs / 100
    return episode_from_arrays(ep_id, obs, actions, rewards, {}, terminated, truncated, 0)


def test_transition_columns_pair_each_observation_with_the_next_and_end_only_terminated_chunks():
    chunks = [_chunk("a", 0.0, 3, terminated=True), _chunk("b", 100.0, 2, truncated=True), _chunk("c", 200.0, 2)]
    for sampled in (chunks, PackedEpisodes(chunks)):
        cols = transition_columns(sampled)
        np.testing.assert_array_equal(cols["obs"][:, 0], [0, 1, 2, 100, 101, 200, 201])
        np.testing.assert_array_equal(cols["new_obs"][:, 0], [1, 2, 3, 101, 102, 201, 202])
        np.testing.assert_array_equal(cols["actions"][:, 0], [0, 10, 20, 1000, 1010, 2000, 2010])
        np.testing.assert_allclose(cols["rewards"], [0, 1, 2, 1, 2, 2, 3])
        # Only the terminated chunk's last step is terminal; a truncated one bootstraps from its last obs.
        np.testing.assert_array_equal(cols["terminateds"], [0, 0, 1, 0, 0, 0, 0])


def test_ring_buffer_overwrites_the_oldest_and_samples_uniformly():
    buffer = TransitionReplayBuffer(capacity=5, seed=0)
    assert buffer.add([_chunk("a", 0.0, 3)]) == 3 and len(buffer) == 3
    buffer.add([_chunk("b", 100.0, 4)])  # 7 transitions into 5 rows: the first two are gone
    assert len(buffer) == 5 and buffer.get_added_timesteps() == 7
    batch = buffer.sample(20_000)
    assert set(batch["obs"][:, 0].tolist()) == {2.0, 100.0, 101.0, 102.0, 103.0}
    assert batch["n_step"].tolist() == [1.0] * 20_000 and batch["weights"].min() == 1.0
    # Uniform: each of the 5 rows is drawn 4,000 times in expectation (sd ~57).
    _, counts = np.unique(batch["obs"][:, 0], return_counts=True)
    assert np.all(np.abs(counts - 4000) < 300)
    # A transition keeps its own next observation and action after the wrap.
    rows = batch["obs"][:, 0] == 102.0
    assert np.all(batch["new_obs"][rows, 0] == 103.0) and np.all(batch["actions"][rows, 0] == 1020.0)


def test_round_larger_than_the_buffer_keeps_its_newest_transitions():
    buffer = TransitionReplayBuffer(capacity=3, seed=0)
    buffer.add([_chunk("a", 0.0, 7)])
    assert sorted(set(buffer.sample(500)["obs"][:, 0].tolist())) == [4.0, 5.0, 6.0]


def test_buffer_state_round_trip_continues_the_same_draws():
    buffer = TransitionReplayBuffer(capacity=8, seed=3)
    buffer.add([_chunk("a", 0.0, 6)])
    buffer.sample(4)
    restored = TransitionReplayBuffer(capacity=8, seed=99)
    restored.set_state(buffer.get_state())
    np.testing.assert_array_equal(restored.sample(16)["obs"], buffer.sample(16)["obs"])
    assert len(restored) == 6


def test_empty_buffer_refuses_to_sample():
    with pytest.raises(ValueError, match="empty"):
        TransitionReplayBuffer(capacity=4).sample(2)


@pytest.mark.parametrize("steps,owed,batch,intensity,expected", [
    (200, 0.0, 512, 12.8, (5, 0.0)),       # 200 * 12.8 / 512 = 5: one update per 40 env steps
    (10, 0.0, 1280, 128.0, (1, 0.0)),      # MT10's papers: one update per round of the 10 envs
    (30, 0.0, 512, 12.8, (0, 0.75)),       # 0.75 of an update owed ...
    (10, 0.75, 512, 12.8, (1, 0.0)),       # ... paid by the next 10 steps
    (200, 0.0, 512, None, (1, 0.0)),       # no intensity: one update per sample round
    (0, 0.0, 512, None, (0, 0.0)),
])
def test_updates_due_by_training_intensity(steps, owed, batch, intensity, expected):
    due, left = updates_due(steps, owed, batch, intensity)
    assert due == expected[0] and left == pytest.approx(expected[1], abs=1e-9)


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapped_runner", "driver_sampling"])
def test_sac_trains_from_flat_replay_at_the_configured_intensity(ray_session, overlap):
    """RLlib's SAC with the transition buffer: every sampled step is stored, the learner runs
    sampled_steps * intensity / batch updates, and the weights reach the EnvRunner."""
    pytest.importorskip("metaworld", reason="needs the 'metaworld' extra")
    import torch

    from orchestrator.config import load_config
    from orchestrator.rl.algorithm import build_algorithm, env_config_for, on_every_learner

    tasks = ["reach-v3", "drawer-close-v3"]
    cfg = load_config(REPO / "configs/mt10_sac.yaml", [
        f"task.tasks=[{', '.join(tasks)}]", "task.horizon=20", "rl.num_envs_per_env_runner=4",
        "rl.rollout_fragment_length=10", f"rl.num_env_runners={int(overlap)}", f"rl.overlap_sampling={overlap}",
        "sac.learning_starts=80", "sac.env_steps_per_iteration=120", "sac.train_batch_size=32",
        "sac.training_intensity=8", "model.hidden=[16]"])
    algo = build_algorithm(cfg, env_config_for(cfg, tasks, None, None))
    try:
        assert isinstance(algo.local_replay_buffer, TransitionReplayBuffer)
        updates = []
        update = algo.learner_group.update
        algo.learner_group.update = lambda *a, **k: updates.append(1) or update(*a, **k)
        for _ in range(3):
            result = algo.train()
        sampled = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
        assert algo.local_replay_buffer.get_added_timesteps() == sampled
        # 40 rows per round (4 envs x 10 steps): 8 / 32 updates per step = 10 per round from the round
        # that brings the lifetime count to learning_starts (the second).
        assert len(updates) == 10 * (sampled // 40 - 1)
        (learner_actor,) = on_every_learner(algo, lambda learner: {
            k: v.detach().clone() for k, v in learner.module["default_policy"].pi_encoder.state_dict().items()})
        group = algo.env_runner_group
        # Runs after the weight sync queued behind the runner's request in flight (an actor's calls run in order).
        runner_actor = (group.foreach_env_runner(lambda r: r.module.pi_encoder.state_dict(),
                                                 local_env_runner=False)[0]
                        if overlap else group.local_env_runner.module.pi_encoder.state_dict())
        assert learner_actor.keys() == runner_actor.keys()
        for key, value in learner_actor.items():
            assert torch.equal(value, torch.as_tensor(runner_actor[key])), key
    finally:
        algo.stop()


def test_lean_sac_sampling_returns_the_episodes_rllibs_default_pipeline_returns():
    """The lean EnvRunner (whole-batch sampling, squashed-Gaussian draw) and RLlib's SingleAgentEnvRunner
    with its default connectors, same weights and seed: the same observations, actions and rewards."""
    pytest.importorskip("metaworld", reason="needs the 'metaworld' extra")
    import torch
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from orchestrator.config import load_config
    from orchestrator.rl.algorithm import env_config_for
    from orchestrator.rl.connectors import LeanSingleAgentEnvRunner
    from orchestrator.rl.sac import build_sac_config

    tasks = ["reach-v3", "drawer-close-v3"]
    runners = []
    for lean in (True, False):
        cfg = load_config(REPO / "configs/mt10_sac.yaml", [
            f"task.tasks=[{', '.join(tasks)}]", "task.horizon=15", "rl.num_envs_per_env_runner=4",
            "rl.num_env_runners=0", "rl.overlap_sampling=false", f"rl.lean_connectors={lean}", "model.hidden=[16]"])
        conf = build_sac_config(cfg, env_config_for(cfg, tasks, None, None))
        runners.append(LeanSingleAgentEnvRunner(config=conf) if lean else SingleAgentEnvRunner(config=conf))
    lean_runner, rllib_runner = runners
    rllib_runner.module.set_state(lean_runner.module.get_state())

    def content(episodes):
        return sorted((ep.t_started, len(ep), ep.is_truncated, np.asarray(ep.get_observations(), np.float32).tobytes(),
                       np.asarray(ep.get_actions(), np.float32).round(6).tobytes(),
                       np.asarray(ep.get_rewards(), np.float64).round(6).tobytes()) for ep in episodes)

    samples = []
    for runner in runners:
        torch.manual_seed(5)
        samples.append([runner.sample(num_timesteps=40, explore=True) for _ in range(2)])
    for mine, rllib in zip(*samples):
        assert sum(map(len, mine)) == sum(map(len, rllib)) >= 40
        assert content(mine) == content(rllib)
        actions = np.concatenate([np.asarray(ep.get_actions()) for ep in mine])
        assert actions.shape[1] == 4 and np.abs(actions).max() <= 1.0
    assert any(ep.is_truncated for ep in samples[0][-1])  # 15-step episodes ended inside the samples
    # Not exploring: the squashed mean, tanh(mu(s)), for every step's observation. (RLlib 2.60's own
    # default pipeline fails here, inside its deterministic squashed-Gaussian draw.)
    for ep in lean_runner.sample(num_timesteps=40, explore=False):
        obs = torch.as_tensor(np.asarray(ep.get_observations())[:-1])
        with torch.no_grad():
            mean = lean_runner.module.forward_inference({"obs": obs})["action_dist_inputs"].chunk(2, -1)[0]
        np.testing.assert_allclose(np.asarray(ep.get_actions()), torch.tanh(mean).numpy(), atol=1e-6)
