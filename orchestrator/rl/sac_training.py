"""Multi-task SAC's training step: RLlib's SAC with replay from flat transition arrays, and
sampling overlapped with learning.

RLlib's SAC replays from an `EpisodeReplayBuffer`: every sample gathers 1,280 one-step
episodes from the stored ones through lookback buffers, and the learner connector pipeline
turns them back into columns. Profiled on MT10 (docs/performance.md), the two took longer
than the SAC update itself. `TransitionReplayBuffer` stores each transition once, as rows of
a few arrays, and samples uniformly over them (the distribution of RLlib's uniform buffer with
n-step 1); `MultiTaskSAC` hands the sampled columns to RLlib's learners as a train batch.
Everything else is RLlib's SAC: its RLModule, learner, loss, target updates and weight syncs.

With ``rl.overlap_sampling`` the EnvRunner actors sample the next round while the learner
updates (`orchestrator.rl.overlap.OverlappedSampling`, the mechanism PPO uses). SAC is
off-policy, so the round sampled with the weights from before the previous round's updates
needs no correction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.algorithms.sac import SAC
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    REPLAY_BUFFER_ADD_DATA_TIMER,
    REPLAY_BUFFER_SAMPLE_TIMER,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)
from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

from orchestrator.rl.overlap import OverlappedSampling
from orchestrator.rl.vector_sampling import PackedEpisodes

OBS, NEXT_OBS, ACTIONS, REWARDS, TERMINATEDS = (SampleBatch.OBS, SampleBatch.NEXT_OBS, SampleBatch.ACTIONS,
                                                SampleBatch.REWARDS, SampleBatch.TERMINATEDS)


def transition_columns(sampled: Any) -> dict[str, np.ndarray]:
    """The one-step transitions of sampled episode chunks (a list of episodes or `PackedEpisodes`).

    A chunk of L steps holds L + 1 observations; its transitions are ``(o_t, a_t, r_t, o_t+1)``
    and only a terminated chunk's last one is terminal (a truncated one bootstraps).
    """
    packed = sampled if isinstance(sampled, PackedEpisodes) else PackedEpisodes(list(sampled))
    total = int(packed.lengths.sum())
    if total == 0:
        return {}
    if isinstance(packed.observations, dict):
        raise ValueError("the transition replay buffer stores Box observations; got a Dict observation space")
    chunk_start = np.concatenate([[0], np.cumsum(packed.lengths)[:-1]])
    # Row of o_t in the packed observations: chunk j's observations start j rows after its steps.
    obs_rows = np.arange(total) + np.repeat(np.arange(len(packed.lengths)), packed.lengths)
    terminated = np.zeros(total, dtype=bool)
    terminated[chunk_start + packed.lengths - 1] = packed.terminated
    return {OBS: packed.observations[obs_rows], NEXT_OBS: packed.observations[obs_rows + 1],
            ACTIONS: packed.actions, REWARDS: packed.rewards.astype(np.float32), TERMINATEDS: terminated}


class TransitionReplayBuffer(EpisodeReplayBuffer):
    """Uniform replay over one-step transitions kept as rows of flat ring arrays.

    ``sample`` returns the SAC train batch columns (``n_step`` 1 and ``weights`` 1 for every
    row, as RLlib's uniform `EpisodeReplayBuffer` gives) with rows drawn uniformly with
    replacement from the stored transitions; the oldest are overwritten beyond ``capacity``.
    """

    def __init__(self, capacity: int = 1_000_000, *, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(capacity=capacity, **kwargs)
        self._rng = np.random.default_rng(seed)
        self._columns: dict[str, np.ndarray] = {}
        self._size = 0
        self._next = 0
        self._added = 0

    def __len__(self) -> int:
        return self._size

    def add(self, episodes: Any) -> int:
        """Store the transitions of sampled chunks; returns how many were added."""
        columns = transition_columns(episodes)
        if not columns:
            return 0
        n = len(columns[REWARDS])
        if not self._columns:
            self._columns = {k: np.empty((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in columns.items()}
        keep = slice(max(0, n - self.capacity), n)  # a round larger than the buffer keeps its newest rows
        rows = (self._next + np.arange(n)[keep]) % self.capacity
        for key, values in columns.items():
            self._columns[key][rows] = values[keep]
        self._next = int((self._next + n) % self.capacity)
        self._size = min(self.capacity, self._size + n)
        self._added += n
        return n

    def sample(self, num_items: int | None = None, **kwargs: Any) -> dict[str, np.ndarray]:
        """``num_items`` transitions drawn uniformly (with replacement) as train batch columns."""
        if self._size == 0:
            raise ValueError("the replay buffer is empty: nothing has been added yet")
        n = int(num_items or self.batch_size_B)
        rows = self._rng.integers(0, self._size, n)
        batch = {key: values[rows] for key, values in self._columns.items()}
        batch["n_step"] = np.ones(n, dtype=np.float32)
        batch["weights"] = np.ones(n, dtype=np.float32)
        return batch

    def get_added_timesteps(self, module_id: Any = None) -> int:
        return self._added

    def get_num_timesteps(self, module_id: Any = None) -> int:
        return self._size

    def get_metrics(self) -> dict:
        return {"num_transitions_stored": self._size, "num_transitions_added_lifetime": self._added}

    def get_state(self) -> dict[str, Any]:
        return {"columns": {k: v[: self._size] for k, v in self._columns.items()}, "size": self._size,
                "next": self._next, "added": self._added, "rng": self._rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self._columns = {k: np.resize(v, (self.capacity, *v.shape[1:])) for k, v in state["columns"].items()}
        self._size, self._next, self._added = int(state["size"]), int(state["next"]), int(state["added"])
        self._rng.bit_generator.state = state["rng"]


def updates_due(sampled_steps: int, owed: float, batch_size: int, training_intensity: float | None) -> tuple[int, float]:
    """Updates to run after sampling ``sampled_steps``, and the fraction still owed.

    ``training_intensity`` is replayed / sampled transitions, so each sampled step earns
    ``training_intensity / batch_size`` updates (MT10's one update per round of the 10 envs,
    batch 1,280: intensity 128); None: one update per sample round.
    """
    if training_intensity is None:
        return (1 if sampled_steps else 0), owed
    owed += sampled_steps * training_intensity / batch_size
    due = int(owed + 1e-9)
    return due, owed - due


class MultiTaskSAC(OverlappedSampling, SAC):
    """RLlib's SAC with `TransitionReplayBuffer` replay (and, optionally, overlapped sampling)."""

    def setup(self, config: Any) -> None:
        super().setup(config)
        self._updates_owed = 0.0
        self._overlap = bool(self.config.learner_config_dict.get("overlap_sampling", False))

    def _create_local_replay_buffer_if_necessary(self, config: Any):
        # RLlib's SACConfig accepts only its episode buffers by name; the uniform one is replaced here.
        buffer_config = dict(config["replay_buffer_config"])
        if buffer_config.get("type") != "EpisodeReplayBuffer":
            return super()._create_local_replay_buffer_if_necessary(config)
        return TransitionReplayBuffer(capacity=int(buffer_config.get("capacity", 1_000_000)),
                                      seed=config.get("seed"))

    def training_step(self) -> None:
        buffer = self.local_replay_buffer
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            sampled, runner_metrics = self._sample_round()
        if not runner_metrics:
            return  # every EnvRunner failed; RLlib restores them before the next iteration
        self.metrics.aggregate(runner_metrics, key=ENV_RUNNER_RESULTS)
        with self.metrics.log_time((TIMERS, REPLAY_BUFFER_ADD_DATA_TIMER)):
            added = sum(buffer.add(chunks) for chunks in sampled)
        lifetime = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        if lifetime < self.config.num_steps_sampled_before_learning_starts:
            return
        batch_size = self.config.total_train_batch_size
        updates, self._updates_owed = updates_due(added, self._updates_owed, batch_size,
                                                  self.config.training_intensity)
        for _ in range(updates):
            with self.metrics.log_time((TIMERS, REPLAY_BUFFER_SAMPLE_TIMER)):
                batch = MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(buffer.sample(batch_size))},
                                        env_steps=batch_size)
            with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                learner_results = self.learner_group.update(batch=batch,
                                                            timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: lifetime})
                self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)
        if updates:
            with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
                # With overlap: queued behind each runner's request in flight, used from its next round.
                self.env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group,
                                                   inference_only=True)

    def _sample_round(self) -> tuple[list[Any], list[dict]]:
        """One sample round: the sampled chunks (episode lists or `PackedEpisodes`) and each runner's metrics."""
        if self._overlap and self.env_runner_group.num_remote_workers() > 0:
            results = self.overlapped_samples()
            return [chunks for chunks, _ in results], [metrics for _, metrics in results]
        episodes, metrics = synchronous_parallel_sample(
            worker_set=self.env_runner_group, concat=True, sample_timeout_s=self.config.sample_timeout_s,
            _uses_new_env_runners=True, _return_metrics=True)
        return [episodes], metrics


__all__ = ["MultiTaskSAC", "TransitionReplayBuffer", "transition_columns", "updates_due"]
