"""Relabeling Simon Says transitions for another goal, on hand-made transitions."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.simon_says.relabel import hindsight_targets, obtained_before, relabel
from tasks.simon_says.transitions import TransitionBatch

# 3 tasks whose goal items are item columns 2, 0 and 3 of a 4-item vocabulary.
TASK_ITEM_INDEX = np.array([2, 0, 3])


def _batch() -> TransitionBatch:
    """Three transitions of task 0: an ordinary step that yields item 0 (task 1's goal),
    the step that yields item 2 (task 0's goal: terminal), and a timeout step."""
    obs = np.array([[1, 0, 0, 0.5, 0.25], [1, 0, 0, 0.5, 0.5], [1, 0, 0, 0.1, 0.0]], dtype=np.float32)
    nxt = obs + np.float32(0.125)
    nxt[:, :3] = obs[:, :3]
    items = np.zeros((3, 4), dtype=bool)
    items[0, 0] = True
    items[1, 2] = True
    return TransitionBatch(
        task=np.zeros(3, dtype=np.int64), obs=obs, action=np.array([4, 5, 6]),
        reward=np.array([0, 1, 0], dtype=np.float32), next_obs=nxt,
        terminated=np.array([False, True, False]), truncated=np.array([False, False, True]),
        items_obtained=items, episode_id=np.array([7, 7, 8]), step=np.array([3, 4, 299]),
        behaviour_policy=np.array(["random"] * 3, dtype=object))


def test_relabel_for_own_task_reproduces_the_rewards() -> None:
    b = _batch()
    r = relabel(b, 0, TASK_ITEM_INDEX)
    assert r.reward.tolist() == [0, 1, 0] and r.terminated.tolist() == [False, True, False]
    assert r.truncated.tolist() == [False, False, True]
    assert np.array_equal(r.obs, b.obs) and np.array_equal(r.next_obs, b.next_obs)


def test_relabel_for_another_task_swaps_goal_reward_and_termination() -> None:
    b = _batch()
    r = relabel(b, 1, TASK_ITEM_INDEX)
    # Task 1's item (column 0) came at row 0: reward 1, terminal there.
    assert r.reward.tolist() == [1, 0, 0] and r.reward.dtype == np.float32
    assert r.terminated.tolist() == [True, False, False]
    # Row 1 ended task 0's episode; for task 1 that end is not its goal: a truncation.
    assert r.truncated.tolist() == [False, True, True]
    assert r.task.tolist() == [1, 1, 1]
    assert (r.obs[:, :3] == [0, 1, 0]).all() and (r.next_obs[:, :3] == [0, 1, 0]).all()
    # Everything after the goal columns is untouched, and the input is not modified.
    assert np.array_equal(r.obs[:, 3:], b.obs[:, 3:]) and np.array_equal(r.next_obs[:, 3:], b.next_obs[:, 3:])
    assert (b.obs[:, :3] == [1, 0, 0]).all() and b.task.tolist() == [0, 0, 0]
    assert r.action.tolist() == [4, 5, 6] and r.step.tolist() == [3, 4, 299]


def test_relabel_per_row_targets_and_never_obtained_item() -> None:
    r = relabel(_batch(), np.array([2, 0, 1]), TASK_ITEM_INDEX)
    # Task 2's item (column 3) never appears; row 1 keeps task 0's success.
    assert r.reward.tolist() == [0, 1, 0] and r.terminated.tolist() == [False, True, False]
    assert r.obs[:, :3].argmax(1).tolist() == [2, 0, 1]


def test_relabel_refuses_unknown_target() -> None:
    with pytest.raises(ValueError, match="target_task must be task indices in 0..2"):
        relabel(_batch(), 3, TASK_ITEM_INDEX)


def test_hindsight_targets_pick_an_obtained_goal_else_keep_the_task() -> None:
    targets = hindsight_targets(_batch(), TASK_ITEM_INDEX, np.random.default_rng(0))
    # Row 0 obtained task 1's item, row 1 task 0's, row 2 nothing (keeps task 0).
    assert targets.tolist() == [1, 0, 0]
    relabelled = relabel(_batch(), targets, TASK_ITEM_INDEX)
    assert relabelled.reward.tolist() == [1, 1, 0]


def test_obtained_before_is_per_episode_and_strictly_earlier() -> None:
    # Rows out of order, two episodes interleaved. Episode 7: item 1 at step 0, item 2 at step 2.
    # Episode 3: item 2 at step 1.
    items = np.zeros((6, 3), dtype=bool)
    episode = np.array([7, 3, 7, 3, 7, 3])
    step = np.array([2, 1, 0, 0, 1, 2])
    items[2, 1] = True  # episode 7, step 0
    items[0, 2] = True  # episode 7, step 2
    items[1, 2] = True  # episode 3, step 1
    batch = TransitionBatch(task=np.zeros(6, np.int64), obs=np.zeros((6, 4), np.float32), action=np.zeros(6, np.int64),
                            reward=np.zeros(6, np.float32), next_obs=np.zeros((6, 4), np.float32),
                            terminated=np.zeros(6, bool), truncated=np.zeros(6, bool), items_obtained=items,
                            episode_id=episode, step=step, behaviour_policy=np.array(["x"] * 6, dtype=object))
    before = obtained_before(batch)
    # Row: (episode, step) -> items obtained at an earlier step of that episode.
    expected = {(7, 0): [], (7, 1): [1], (7, 2): [1], (3, 0): [], (3, 1): [], (3, 2): [2]}
    for r in range(6):
        assert np.flatnonzero(before[r]).tolist() == expected[(episode[r], step[r])], r
    assert obtained_before(batch, np.array([2]))[:, 0].tolist() == [False, False, False, False, False, True]
