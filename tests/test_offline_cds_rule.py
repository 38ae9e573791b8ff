"""CDS on a hand-built two-task dataset, trained with the real discrete CQL and batch builder:
relabeled transitions that are better than the target task's own data are shared, worse ones are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrator.offline.config import OfflineConfig
from orchestrator.offline.training import SharedBatches
from policies.cql import CQLBatch, CQLConfig, DiscreteCQL
from tasks.simon_says.transitions import TransitionBatch

# Two tasks A (0), B (1) whose items are columns 0 and 1 of items_obtained; 3 actions.
# Observation: [goal A, goal B, start state?]. Every episode is one step from the start state.
N = 64


def _rows(task: int, action: int, items: tuple[bool, bool], first_episode: int) -> TransitionBatch:
    goal = np.eye(2, dtype=np.float32)[task]
    obs = np.tile(np.r_[goal, 1.0].astype(np.float32), (N, 1))
    next_obs = np.tile(np.r_[goal, 0.0].astype(np.float32), (N, 1))
    own_reward = bool(items[task])
    return TransitionBatch(
        task=np.full(N, task), obs=obs, action=np.full(N, action), reward=np.full(N, float(own_reward), np.float32),
        next_obs=next_obs, terminated=np.ones(N, bool), truncated=np.zeros(N, bool),
        items_obtained=np.tile(np.array(items, bool), (N, 1)), episode_id=first_episode + np.arange(N),
        step=np.zeros(N, np.int64), behaviour_policy=np.full(N, "hand", dtype=object))


def _train_cds(data: TransitionBatch, steps: int = 300, seed: int = 0) -> SharedBatches:
    torch.set_num_threads(1)
    offline = OfflineConfig(dataset="unused", sharing="cds", percentile=50, batch_size_per_task=16, shared_per_task=16,
                            threshold_window=64, cds_warmup_steps=50)
    batches = SharedBatches(data, np.array([0, 1]), 2, offline, np.random.default_rng(seed), ["A", "B"])
    agent = DiscreteCQL(3, 3, CQLConfig(gamma=0.5, alpha=1.0, lr=1e-2, hidden=(16,), value_range=(0.0, 1.0)), seed=seed)
    for _ in range(steps):
        batch, _ = batches.sample(agent.q_values)
        agent.update(CQLBatch.from_numpy(obs=batch.obs, action=batch.action, reward=batch.reward,
                                         next_obs=batch.next_obs, terminated=batch.terminated))
    batches.agent = agent
    return batches


def _recent_acceptance(batches: SharedBatches, steps: int = 50) -> float:
    """Fraction of B's transitions relabeled for A accepted over the last ``steps`` batches."""
    before = batches.accepted[0, 1], batches.offered[0, 1]
    batches_q = batches.agent.q_values
    for _ in range(steps):
        batches.sample(batches_q)
    return (batches.accepted[0, 1] - before[0]) / (batches.offered[0, 1] - before[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cds_accepts_relabeled_transitions_better_than_the_targets_own(seed) -> None:
    # A's own data: action 0 ends the episode with nothing. B's data: action 1 obtains both items,
    # so relabeled for A it carries A's reward: better than anything A's own data shows.
    data = TransitionBatch.concatenate([_rows(0, 0, (False, False), 0), _rows(1, 1, (True, True), 1000)])
    batches = _train_cds(data, seed=seed)
    q = batches.agent.q_values(np.array([[1.0, 0.0, 1.0]], np.float32))[0]
    assert q[1] > q[0], q  # the shared, rewarding action is valued above A's own
    assert _recent_acceptance(batches) == 1.0
    assert batches.sharing_summary()["A"]["accepted_rewarding"] > 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cds_rejects_relabeled_transitions_worse_than_the_targets_own(seed) -> None:
    # A's own data: action 0 obtains A's item (reward 1). B's data: action 1 obtains only B's item,
    # so relabeled for A it earns nothing (and the episode went on elsewhere): worse than A's own.
    data = TransitionBatch.concatenate([_rows(0, 0, (True, False), 0), _rows(1, 1, (False, True), 1000)])
    batches = _train_cds(data, seed=seed)
    q = batches.agent.q_values(np.array([[1.0, 0.0, 1.0]], np.float32))[0]
    assert q[0] > q[1], q
    assert _recent_acceptance(batches) == 0.0
    assert batches.sharing_summary()["A"]["accepted_other"] < 0.5
