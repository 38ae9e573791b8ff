"""Which other tasks' transitions each task trains on, in offline multi-task RL.

Modes (Yu et al. 2021, "Conservative Data Sharing for Multi-Task Offline RL"):

- ``none``: each task trains on its own data only;
- ``all``: every transition, relabeled for task i, joins task i's batch;
- ``cds``: a transition from task j, relabeled for task i, joins task i's batch iff its
  conservative Q-value under task i is >= the k-th percentile of the Q-values of task i's
  own data (ties accepted). Call it again as Q changes: the rule is recomputed each time.

Pure numpy; the caller computes the Q-values (any conservative Q-function).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SHARING_MODES = ("none", "all", "cds")


@dataclass(frozen=True)
class SharingDecision:
    """What each task accepted.

    ``masks[i]``: bool per candidate offered to task i (True = joins task i's batch);
    ``accepted_fraction[i, j]``: accepted / offered of task j's transitions into task i
    (NaN where j offered none; the diagonal, a task's own data, is 1);
    ``thresholds[i]``: the Q-value a candidate needed (cds only, else NaN).
    """

    masks: list[np.ndarray]
    accepted_fraction: np.ndarray
    thresholds: np.ndarray

    def accepted_counts(self) -> np.ndarray:
        return np.array([int(m.sum()) for m in self.masks], dtype=np.int64)


def share_transitions(
    mode: str,
    own_q: Sequence[np.ndarray],
    candidate_q: Sequence[np.ndarray],
    candidate_source: Sequence[np.ndarray],
    percentile: float = 90.0,
    task_names: Sequence[str] | None = None,
) -> SharingDecision:
    """Decide, for every task i, which relabeled candidates join its batch.

    ``own_q[i]``: Q-values (under task i) of task i's own transitions;
    ``candidate_q[i]``: Q-values under task i of transitions relabeled from other tasks;
    ``candidate_source[i]``: the task each of those came from (same length);
    ``percentile``: k in [0, 100] (numpy's linear interpolation between order statistics).
    """
    if mode not in SHARING_MODES:
        raise ValueError(f"unknown sharing mode {mode!r}; valid choices: {list(SHARING_MODES)}")
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    num_tasks = len(own_q)
    if len(candidate_q) != num_tasks or len(candidate_source) != num_tasks:
        raise ValueError(f"own_q, candidate_q and candidate_source need one entry per task ({num_tasks}); "
                         f"got {len(own_q)}, {len(candidate_q)}, {len(candidate_source)}")
    names = list(task_names) if task_names is not None else [f"task {i}" for i in range(num_tasks)]

    masks: list[np.ndarray] = []
    thresholds = np.full(num_tasks, np.nan)
    fraction = np.full((num_tasks, num_tasks), np.nan)
    for i in range(num_tasks):
        q = np.asarray(candidate_q[i], dtype=np.float64).reshape(-1)
        source = np.asarray(candidate_source[i], dtype=np.int64).reshape(-1)
        if q.shape != source.shape:
            raise ValueError(f"{names[i]}: candidate_q has {q.size} values but candidate_source {source.size}")
        if source.size and (source.min() < 0 or source.max() >= num_tasks):
            raise ValueError(f"{names[i]}: candidate_source has task ids outside [0, {num_tasks})")
        if not np.isfinite(q).all():
            raise ValueError(f"{names[i]}: candidate_q contains NaN or inf")
        if mode == "none":
            mask = np.zeros(q.shape, dtype=bool)
        elif mode == "all":
            mask = np.ones(q.shape, dtype=bool)
        else:
            own = np.asarray(own_q[i], dtype=np.float64).reshape(-1)
            if own.size == 0:
                raise ValueError(f"{names[i]}: cds needs Q-values of the task's own data to set its threshold, "
                                 "and this task has no own data; use mode 'all' or collect data for it")
            if not np.isfinite(own).all():
                raise ValueError(f"{names[i]}: own_q contains NaN or inf")
            thresholds[i] = np.percentile(own, percentile)
            mask = q >= thresholds[i]  # ties accepted
        masks.append(mask)
        offered = np.bincount(source, minlength=num_tasks)
        accepted = np.bincount(source[mask], minlength=num_tasks)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction[i] = np.where(offered > 0, accepted / np.maximum(offered, 1), np.nan)
        fraction[i, i] = 1.0
    return SharingDecision(masks=masks, accepted_fraction=fraction, thresholds=thresholds)


__all__ = ["SHARING_MODES", "SharingDecision", "share_transitions"]
