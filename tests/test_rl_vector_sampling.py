"""Whole-batch sampling (`orchestrator.rl.vector_sampling`) returns what RLlib's own loop returns, the lean
learner connector builds RLlib's train batch, and overlapped PPO (`orchestrator.rl.overlap`) never trains
on steps older than the lag it reports."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ray.rllib")

from ray.rllib.core.columns import Columns  # noqa: E402
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner  # noqa: E402
from ray.rllib.env.single_agent_episode import SingleAgentEpisode  # noqa: E402
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO  # noqa: E402

from orchestrator.config import load_config, resolve_task_space  # noqa: E402
from orchestrator.rl.algorithm import build_ppo_config, env_config_for  # noqa: E402
from orchestrator.rl.connectors import LeanSingleAgentEnvRunner  # noqa: E402
from orchestrator.rl.overlap import split_by_lag  # noqa: E402

QUICKSTART = "configs/quickstart.yaml"
SMALL = ["rl.num_envs_per_env_runner=8", "rl.train_batch_size=256", "rl.minibatch_size=128", "task.horizon=12"]


def _runner_pair(mask: bool):
    cfg = load_config(QUICKSTART, ["rl.num_env_runners=0", "rl.overlap_sampling=false", *SMALL, "bonus.mode=off",
                                   f"task.action_mask={str(mask).lower()}"])
    conf = build_ppo_config(cfg, env_config_for(cfg, list(resolve_task_space(cfg).names), None, None))
    vectorized, reference = LeanSingleAgentEnvRunner(config=conf), LeanSingleAgentEnvRunner(config=conf)
    reference.set_state(vectorized.get_state())
    return vectorized, reference


def _samples(runner, vectorized: bool, calls: int = 3, steps: int = 100) -> list[list[SingleAgentEpisode]]:
    torch.manual_seed(1)  # the lean connector draws actions from torch's global generator
    if vectorized:
        return [runner.sample(num_timesteps=steps) for _ in range(calls)]
    return [SingleAgentEnvRunner._sample(runner, num_timesteps=steps, explore=True) for _ in range(calls)]


def _content(ep: SingleAgentEpisode) -> tuple:
    obs = ep.get_observations()
    leaves = [obs[k] for k in sorted(obs)] if isinstance(obs, dict) else [obs]
    return (ep.t_started, len(ep), ep.is_terminated, ep.is_truncated, np.asarray(ep.get_actions()).tobytes(),
            np.asarray(ep.get_rewards(), np.float64).round(6).tobytes(),
            *[np.asarray(x, np.float32).tobytes() for x in leaves],
            np.asarray(ep.get_extra_model_outputs(Columns.ACTION_LOGP), np.float32).round(5).tobytes(),
            np.asarray(ep.get_extra_model_outputs(Columns.ACTION_DIST_INPUTS), np.float32).tobytes())


@pytest.mark.parametrize("mask", [True, False])
def test_vectorized_sampling_returns_the_episodes_rllibs_loop_returns(mask):
    vectorized, reference = _runner_pair(mask)
    ours, theirs = _samples(vectorized, True), _samples(reference, False)
    for mine, rllib in zip(ours, theirs):
        assert sum(map(len, mine)) == sum(map(len, rllib)) >= 100
        assert sorted(map(_content, mine)) == sorted(map(_content, rllib))
        assert all(ep.is_numpy for ep in mine)
        assert any(ep.is_done for ep in mine) and any(not ep.is_done for ep in mine)
    # An episode cut at the end of one sample continues under the same id in the next one.
    for calls in (ours, theirs):
        for before, after in zip(calls, calls[1:]):
            cut = {ep.id_: ep.t_started + len(ep) for ep in before if not ep.is_done}
            continued = {ep.id_: ep.t_started for ep in after if ep.id_ in cut}
            assert continued and all(continued[i] == cut[i] for i in continued)
    # The episode metrics RLlib reports come out the same.
    got, want = vectorized.get_metrics(), reference.get_metrics()
    for key in ("episode_return_mean", "episode_len_mean", "num_episodes"):
        assert float(got[key].peek()) == pytest.approx(float(want[key].peek()))


def test_steps_carry_the_weights_they_were_sampled_with():
    vectorized, _ = _runner_pair(True)
    state = vectorized.get_state()
    state[WEIGHTS_SEQ_NO] = 7
    vectorized.set_state(state)
    episodes = vectorized.sample(num_timesteps=64)
    assert all((np.asarray(ep.get_extra_model_outputs(WEIGHTS_SEQ_NO)) == 7).all() for ep in episodes)


def _chunk(seq_no: int, length: int = 3) -> SingleAgentEpisode:
    return SingleAgentEpisode(observations=list(range(length + 1)), actions=[0] * length, rewards=[0.0] * length,
                              extra_model_outputs={WEIGHTS_SEQ_NO: [seq_no] * length}, len_lookback_buffer=0)


def test_split_by_lag_keeps_only_steps_within_the_bound_and_reports_their_largest_lag():
    chunks = [_chunk(9), _chunk(8), _chunk(6), _chunk(10)]
    keep, stale, lag = split_by_lag(chunks, learner_seq_no=10, max_lag=2)
    assert keep == [chunks[0], chunks[1], chunks[3]] and stale == [chunks[2]] and lag == 2
    keep, stale, lag = split_by_lag(chunks, learner_seq_no=10, max_lag=0)
    assert keep == [chunks[3]] and lag == 0


def test_overlap_needs_an_env_runner_and_ppo():
    with pytest.raises(ValueError, match="num_env_runners >= 1"):
        load_config(QUICKSTART, ["rl.num_env_runners=0", "rl.overlap_sampling=true"])


@pytest.mark.parametrize("max_lag,runners", [(1, 1), (0, 1), (1, 2)])
def test_overlapped_ppo_trains_only_on_steps_within_the_lag_it_reports(ray_session, max_lag, runners):
    """Every batch the learner gets is checked against the learner's own update count; the same
    config scales to more EnvRunners by rl.num_env_runners alone."""
    from orchestrator.rl.algorithm import build_algorithm

    cfg = load_config(QUICKSTART, [f"rl.num_env_runners={runners}", "rl.overlap_sampling=true", *SMALL, "bonus.mode=off",
                                   f"rl.max_policy_lag={max_lag}", "rl.num_cpus_per_env_runner=0.5"])
    algo = build_algorithm(cfg, env_config_for(cfg, list(resolve_task_space(cfg).names), None, None))
    trained: list[tuple[int, int]] = []  # (learner's update count before the update, oldest step's weights)
    update = algo.learner_group.update

    def checked_update(*, episodes, **kwargs):
        seq = algo._learner_seq_no()
        trained.append((seq, min(int(np.min(ep.get_extra_model_outputs(WEIGHTS_SEQ_NO))) for ep in episodes)))
        return update(episodes=episodes, **kwargs)

    algo.learner_group.update = checked_update
    try:
        results = [algo.train() for _ in range(5)]
    finally:
        algo.stop()
    lags = [r["policy_lag"] for r in results]
    dropped = sum(r["stale_env_steps_dropped"] for r in results)
    assert all(seq - oldest <= max_lag for seq, oldest in trained)
    if max_lag == 1:
        assert len(trained) == 5 and dropped == 0
        assert lags[0] == 0 and lags[1:] == [1, 1, 1, 1]  # the first batch is sampled before any update
        assert [seq - oldest for seq, oldest in trained] == lags
    else:  # a batch sampled during an update is one update old: dropped, never trained on; the next
        # request samples with the new weights, so training goes on every other iteration
        assert [seq - oldest for seq, oldest in trained] == [0] * len(trained) and 1 < len(trained) < 5
        assert dropped >= 256


def test_lean_learner_connector_builds_rllibs_train_batch(ray_session):
    """`EpisodesToTrainBatchWithGAE` against RLlib's default PPO learner pipeline on the same episodes:
    every column, row for row, advantages and value targets included."""
    import copy

    from orchestrator.rl.algorithm import build_algorithm
    from orchestrator.rl.learner_connectors import EpisodesToTrainBatchWithGAE

    cfg = load_config(QUICKSTART, ["rl.num_env_runners=0", "rl.overlap_sampling=false", *SMALL, "bonus.mode=off",
                                   "rl.lean_connectors=false"])
    algo = build_algorithm(cfg, env_config_for(cfg, list(resolve_task_space(cfg).names), None, None))
    lean = EpisodesToTrainBatchWithGAE(gamma=cfg.rl.gamma, lambda_=cfg.rl.lambda_)
    try:
        learner = algo.learner_group._learner  # RLlib's default pipeline (lean_connectors off)
        for _ in range(3):
            episodes = algo.env_runner.sample(num_timesteps=100)
            assert any(ep.is_done for ep in episodes) and any(not ep.is_done for ep in episodes)
            want = learner._learner_connector(rl_module=learner.module, batch={}, episodes=copy.deepcopy(episodes),
                                              shared_data={})["default_policy"]
            lengths = [(ep.id_, len(ep), ep.is_truncated) for ep in episodes]
            got = lean(rl_module=learner.module, batch={}, episodes=episodes, shared_data={})["default_policy"]
            assert set(got) == set(want)
            for key, value in want.items():
                pairs = value.items() if isinstance(value, dict) else [(None, value)]
                for sub, expected in pairs:
                    actual = got[key][sub] if sub is not None else got[key]
                    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (key, sub)
                    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5, msg=f"{key} {sub}")
            assert [(ep.id_, len(ep), ep.is_truncated) for ep in episodes] == lengths  # episodes left as they were
            # Decoupled: the same value targets from the shared forward pass; the behaviour columns replaced by
            # the current policy's (sampled with these very weights, so the importance weights are 1).
            dec = EpisodesToTrainBatchWithGAE(gamma=cfg.rl.gamma, lambda_=cfg.rl.lambda_, decoupled=True)(
                rl_module=learner.module, batch={}, episodes=episodes, shared_data={})["default_policy"]
            torch.testing.assert_close(dec["value_targets"], got["value_targets"])
            steps = got[Columns.LOSS_MASK]  # bootstrap rows repeat the last action, which the final obs may mask
            torch.testing.assert_close(dec[Columns.ACTION_LOGP][steps], got[Columns.ACTION_LOGP][steps], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(dec["advantages"][steps], got["advantages"][steps], rtol=1e-3, atol=1e-3)
    finally:
        algo.stop()


def test_decoupled_ppo_moves_the_off_policy_correction_into_the_advantage():
    """Hand-computed: behaviour logp -> proximal logp, advantage * min(pi_prox / pi_behaviour, 2)."""
    from ray.rllib.evaluation.postprocessing import Postprocessing

    from orchestrator.rl.action_masking import MaskedCategorical
    from orchestrator.rl.learner_connectors import decouple_from_behaviour_policy

    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.2, 0.4, 0.4]]))

    class Proximal:  # the policy the update starts from
        def forward_train(self, batch):
            return {Columns.ACTION_DIST_INPUTS: logits}

        def get_train_action_dist_cls(self):
            return MaskedCategorical

    batch = {Columns.ACTIONS: torch.tensor([0, 2, 1]),
             Columns.ACTION_LOGP: torch.log(torch.tensor([0.25, 0.8, 0.1])),  # behaviour policy's
             Columns.ACTION_DIST_INPUTS: torch.zeros(3, 3),
             Postprocessing.ADVANTAGES: torch.tensor([1.0, -2.0, 3.0])}
    decouple_from_behaviour_policy(Proximal(), batch, max_importance_weight=2.0)
    # pi_prox(a) = 0.5, 0.8, 0.4; weights 0.5/0.25 = 2, 0.8/0.8 = 1, 0.4/0.1 = 4 -> truncated to 2
    torch.testing.assert_close(batch[Postprocessing.ADVANTAGES], torch.tensor([2.0, -2.0, 6.0]))
    torch.testing.assert_close(batch[Columns.ACTION_LOGP], torch.log(torch.tensor([0.5, 0.8, 0.4])))
    torch.testing.assert_close(batch[Columns.ACTION_DIST_INPUTS], logits)


def _sampled(result: dict) -> float:
    return float(result["env_runners"].get("num_env_steps_sampled", float("nan")))


def test_overlapped_sampling_survives_an_env_runner_crash(ray_session):
    """The EnvRunner dies with a sample request in flight: Ray restarts it, RLlib restores its weights,
    and training goes on with batches within the lag bound (no stale or half batch is trained on)."""
    import ray

    from orchestrator.rl.algorithm import build_algorithm

    cfg = load_config(QUICKSTART, ["rl.num_env_runners=1", "rl.overlap_sampling=true", *SMALL, "bonus.mode=off",
                                   "rl.num_cpus_per_env_runner=0.5"])
    algo = build_algorithm(cfg, env_config_for(cfg, list(resolve_task_space(cfg).names), None, None))
    try:
        first = [algo.train() for _ in range(2)]
        assert algo._sample_requests_in_flight == 1
        runner = algo.env_runner_group._worker_manager._actors[1]
        ray.kill(runner, no_restart=False)  # SIGKILL-like; the actor's max_restarts lets Ray bring it back
        after, deadline = [], time.monotonic() + 300  # generous: a restart on a loaded 2-core machine takes seconds
        while time.monotonic() < deadline and (len(after) < 3 or not all(_sampled(r) >= 256 for r in after[-2:])):
            after.append(algo.train())
    finally:
        algo.stop()
    sampled = [_sampled(r) for r in after]
    assert all(_sampled(r) >= 256 for r in first)
    # While the runner restarts, iterations sample nothing (NaN: `mto train` does not count them); then it samples again.
    assert any(np.isnan(s) for s in sampled) and all(s >= 256 for s in sampled[-2:]), sampled
    assert not any(r.get("policy_lag", 0) > 1 for r in after)  # NaN: an iteration with no batch


def test_packed_episodes_unpack_to_the_same_chunks():
    import pickle

    from orchestrator.rl.vector_sampling import PackedEpisodes

    vectorized, _ = _runner_pair(True)
    for _ in range(2):
        episodes = vectorized.sample(num_timesteps=100)
        back = pickle.loads(pickle.dumps(PackedEpisodes(episodes))).unpack()
        assert [ep.id_ for ep in back] == [ep.id_ for ep in episodes]
        assert [_content(ep) for ep in back] == [_content(ep) for ep in episodes]
        assert [ep.is_done for ep in back] == [ep.is_done for ep in episodes]
        assert all(np.array_equal(a.get_extra_model_outputs(WEIGHTS_SEQ_NO), b.get_extra_model_outputs(WEIGHTS_SEQ_NO))
                   for a, b in zip(back, episodes))


def test_the_local_ray_runs_env_runners_at_the_drivers_priority():
    """Ray's default worker niceness (15) would hand an overlapped EnvRunner's core to any other program."""
    import os
    import subprocess
    import sys

    code = ("import os, ray\nfrom orchestrator.runs.session import connect_ray\nconnect_ray(None)\n"
            "print('niceness', ray.get(ray.remote(lambda: os.nice(0)).remote()) - os.nice(0))\nray.shutdown()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RAY_ADDRESS": ""})
    assert "niceness 0" in out.stdout, out.stdout + out.stderr[-2000:]
