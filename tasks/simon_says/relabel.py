"""Relabel Simon Says transitions for another goal (data sharing and hindsight relabeling).

A Simon Says reward is a function of what happened at the step, not of the goal the
behaviour policy was given: "reward 1 iff the goal item was obtained (for the first time
this episode) at this step". So any transition can be rewritten for any target task:

- ``obs`` / ``next_obs``: the one-hot goal (the first ``num_tasks`` columns) becomes the target's;
- ``reward`` = 1 iff ``items_obtained[target's item]`` at this step, else 0;
- ``terminated`` = that same event (the env ends an episode when its goal is obtained);
- ``truncated`` = the original truncation, or an original termination that is not the
  target's (the episode stopped for a reason that is not the new goal: no bootstrap cut,
  but the episode boundary is kept).

Hindsight relabeling is the same call with the target chosen from what was obtained.

A row whose episode had already obtained the target's item at an earlier step is no
transition of the target task at all: that task's episode would have ended there. Data
sharing leaves such rows out (`obtained_before`); relabeled, they would teach "reward 0
forever" on states the task never visits, and conservative Q-learning then pushes the
target's own good actions down on similar states.
"""

from __future__ import annotations

import numpy as np

from tasks.simon_says.transitions import TransitionBatch


def relabel(batch: TransitionBatch, target_task: int | np.ndarray, task_item_index: np.ndarray) -> TransitionBatch:
    """``batch`` rewritten as if its goal had been ``target_task`` (one task id, or one per row).

    ``task_item_index[t]`` is task t's item column in ``items_obtained``; the number of tasks
    (the width of the one-hot goal) is ``len(task_item_index)``. Inputs are not modified.
    """
    task_item_index = np.asarray(task_item_index, dtype=np.int64)
    num_tasks = task_item_index.shape[0]
    n = len(batch)
    target = np.broadcast_to(np.asarray(target_task, dtype=np.int64), (n,))
    if n and (target.min() < 0 or target.max() >= num_tasks):
        raise ValueError(f"target_task must be task indices in 0..{num_tasks - 1}, got {np.unique(target)}")
    if batch.obs.shape[1] < num_tasks:
        raise ValueError(f"observations have {batch.obs.shape[1]} columns, fewer than the {num_tasks}-task one-hot goal")
    items = np.asarray(batch.items_obtained, dtype=bool)
    if task_item_index.size and task_item_index.max() >= items.shape[1]:
        raise ValueError(f"task_item_index refers to item {task_item_index.max()}, items_obtained has {items.shape[1]} columns")
    obtained = items[np.arange(n), task_item_index[target]]
    original_end = np.asarray(batch.terminated, dtype=bool) | np.asarray(batch.truncated, dtype=bool)
    return TransitionBatch(
        task=target.copy(),
        obs=_with_goal(batch.obs, target, num_tasks),
        action=batch.action,
        reward=obtained.astype(np.float32),
        next_obs=_with_goal(batch.next_obs, target, num_tasks),
        terminated=obtained,
        truncated=original_end & ~obtained,
        items_obtained=batch.items_obtained,
        episode_id=batch.episode_id,
        step=batch.step,
        behaviour_policy=batch.behaviour_policy,
    )


def _with_goal(obs: np.ndarray, target: np.ndarray, num_tasks: int) -> np.ndarray:
    out = np.array(obs, dtype=np.float32, copy=True)
    out[:, :num_tasks] = 0.0
    out[np.arange(out.shape[0]), target] = 1.0
    return out


def obtained_before(batch: TransitionBatch, item_columns: np.ndarray | None = None) -> np.ndarray:
    """Bool [N, items] (or [N, len(item_columns)]): the item was obtained at an *earlier* step of the row's episode.

    Rows may come in any order; episodes are told apart by ``episode_id`` and ordered by ``step``.
    """
    items = np.asarray(batch.items_obtained, dtype=bool)
    if item_columns is not None:
        items = items[:, np.asarray(item_columns, dtype=np.int64)]
    n = items.shape[0]
    if n == 0:
        return np.zeros(items.shape, dtype=bool)
    order = np.lexsort((np.asarray(batch.step), np.asarray(batch.episode_id)))
    counts = items[order].astype(np.int32)
    episode = np.asarray(batch.episode_id)[order]
    before = np.cumsum(counts, axis=0) - counts  # obtained at earlier rows, all episodes so far
    first = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    start = np.repeat(first, np.diff(np.r_[first, n]))  # each row's episode's first row
    out = np.empty(items.shape, dtype=bool)
    out[order] = (before - before[start]) > 0
    return out


def hindsight_targets(batch: TransitionBatch, task_item_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each row, a task whose item was obtained at this step (chosen at random among them),
    or the row's own task when none was: relabel with these for hindsight experience replay."""
    items = np.asarray(batch.items_obtained, dtype=bool)[:, np.asarray(task_item_index, dtype=np.int64)]
    scores = np.where(items, rng.random(items.shape), -1.0)
    best = scores.argmax(axis=1)
    return np.where(items.any(axis=1), best, np.asarray(batch.task, dtype=np.int64))


__all__ = ["hindsight_targets", "obtained_before", "relabel"]
