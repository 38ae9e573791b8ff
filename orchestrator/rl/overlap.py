"""Sampling overlapped with learning: PPO (and SAC) whose EnvRunner actors sample the next
batch while the learner updates on this one.

`OverlappedSampling` is the mechanism (one sample request in flight per EnvRunner); PPO's use
of it, with its lag accounting, follows. Multi-task SAC uses it too (`orchestrator.rl.sac_training`).

RLlib's PPO `training_step` samples, then learns, then syncs weights: with EnvRunner
actors, the runners wait while the learner works and the learner waits while they
sample. `OverlappedPPO` (``rl.overlap_sampling: true``) keeps one sample request in
flight per EnvRunner: at each iteration it takes the batch that request returned,
sends the next request at once, and updates on the batch meanwhile. The loss is
RLlib's PPO loss unchanged (clipped surrogate against the behaviour policy's stored
log-probabilities); the price is a policy lag of one update: a batch is sampled with
the weights from before the previous update.

The lag is measured, not assumed: every step carries the ``weights_seq_no`` it was
sampled with, and each iteration reports ``policy_lag`` (the learner's update count
minus the oldest step's). Steps older than ``rl.max_policy_lag`` updates (after an
EnvRunner restart, say) are dropped, never trained on, and counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.algorithms.ppo import PPO
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
    WEIGHTS_SEQ_NO,
)

SAMPLE_TAG = "overlapped_sample"
POLICY_LAG = "policy_lag"  # in the iteration's result; logged to MLflow under this name
STALE_STEPS_DROPPED = "stale_env_steps_dropped"


def _sample_with_metrics(runner) -> tuple[Any, dict]:
    from orchestrator.rl.vector_sampling import PackedEpisodes

    episodes = runner.sample()
    if all(ep.is_numpy for ep in episodes):
        episodes = PackedEpisodes(episodes)  # a few arrays to unpickle instead of thousands
    return episodes, runner.get_metrics()


def _episodes(sampled: Any) -> list:
    return sampled.unpack() if hasattr(sampled, "unpack") else sampled


def episode_lag(episodes: list, learner_seq_no: int) -> np.ndarray:
    """Updates between the weights each episode chunk was sampled with and the learner's current ones."""
    return np.array([learner_seq_no - int(np.min(ep.get_extra_model_outputs(WEIGHTS_SEQ_NO)))
                     for ep in episodes if len(ep) > 0], dtype=np.int64)


def split_by_lag(episodes: list, learner_seq_no: int, max_lag: int) -> tuple[list, list, int]:
    """The chunks fresh enough to train on, the stale ones, and the largest lag among the kept."""
    lags = episode_lag(episodes, learner_seq_no)
    chunks = [ep for ep in episodes if len(ep) > 0]
    keep = [ep for ep, lag in zip(chunks, lags) if lag <= max_lag]
    stale = [ep for ep, lag in zip(chunks, lags) if lag > max_lag]
    kept_lags = lags[lags <= max_lag]
    return keep, stale, int(kept_lags.max()) if kept_lags.size else 0


class OverlappedSampling:
    """Algorithm mixin: one sample request in flight per EnvRunner actor while the learner works.

    `overlapped_samples` returns what the requests sent last time sampled and sends the next
    ones at once; weight syncs sent after it queue behind them (an actor runs its calls in
    order), so a round is sampled with the weights from before the previous round's update.
    Used by `OverlappedPPO` and, with ``rl.overlap_sampling``, by multi-task SAC.
    """

    _sample_requests_in_flight = 0

    def overlapped_samples(self) -> list[tuple[Any, dict]]:
        """``[(episodes or PackedEpisodes, runner metrics), ...]`` of the requests in flight; sends the next."""
        if self._sample_requests_in_flight == 0:
            self._send_sample_requests()
        results = self._collect_samples()
        self._send_sample_requests()  # sampled while the learner updates
        return results

    def _send_sample_requests(self) -> None:
        self._sample_requests_in_flight += self.env_runner_group.foreach_env_runner_async(
            _sample_with_metrics, tag=SAMPLE_TAG)

    def _collect_samples(self) -> list[tuple[Any, dict]]:
        """Wait for every request in flight (a failed runner's request ends with its failure)."""
        results: list[tuple[Any, dict]] = []
        timeout = self.config.sample_timeout_s
        group = self.env_runner_group
        while self._sample_requests_in_flight > 0:
            before = group._worker_manager.num_outstanding_async_reqs(tag=SAMPLE_TAG)
            ready = group.fetch_ready_async_reqs(tags=SAMPLE_TAG, timeout_seconds=timeout)
            after = group._worker_manager.num_outstanding_async_reqs(tag=SAMPLE_TAG)
            results.extend(r for _, r in ready)
            if before == after:  # nothing came back within the timeout: give up on these requests
                self._sample_requests_in_flight = 0
                break
            self._sample_requests_in_flight = after
        return results

    def restore_env_runners(self, env_runner_group) -> list[int]:
        restored = super().restore_env_runners(env_runner_group)
        if restored:  # a restarted runner has no request in flight; count again from what is outstanding
            self._sample_requests_in_flight = env_runner_group._worker_manager.num_outstanding_async_reqs(tag=SAMPLE_TAG)
        return restored


class OverlappedPPO(OverlappedSampling, PPO):
    """RLlib PPO with sampling overlapped with learning (one request in flight per EnvRunner)."""

    def setup(self, config: Any) -> None:
        super().setup(config)
        self._max_policy_lag = int(self.config.learner_config_dict.get("max_policy_lag", 1))

    def training_step(self) -> None:
        group = self.env_runner_group
        if group.num_remote_workers() == 0:
            return super().training_step()  # sampling in the driver: nothing to overlap with
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            results = self.overlapped_samples()
        if not results:
            return  # every EnvRunner failed; RLlib restores them before the next iteration
        episodes = [ep for sampled, _ in results for ep in _episodes(sampled)]
        self.metrics.aggregate([m for _, m in results], key=ENV_RUNNER_RESULTS)
        learner_seq_no = self._learner_seq_no()
        episodes, stale, lag = split_by_lag(episodes, learner_seq_no, self._max_policy_lag)
        self.metrics.log_value(POLICY_LAG, lag, window=1)
        self.metrics.log_value(STALE_STEPS_DROPPED, sum(len(ep) for ep in stale), reduce="sum")
        if not episodes:
            return
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                    (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME))},
                num_epochs=self.config.num_epochs,
                minibatch_size=self.config.minibatch_size,
                shuffle_batch_per_epoch=self.config.shuffle_batch_per_epoch,
            )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            # Queued behind each runner's request in flight, so the request sent at the next
            # iteration samples with these weights: the lag stays one update.
            group.sync_weights(from_worker_or_learner_group=self.learner_group, inference_only=True)

    def _learner_seq_no(self) -> int:
        return int(next(iter(self.learner_group.foreach_learner(_weights_seq_no))).get())


def _weights_seq_no(learner) -> int:
    return learner._weights_seq_no
