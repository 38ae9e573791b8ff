"""Which other tasks' transitions each task trains on, in offline multi-task RL.

Modes (Yu et al. 2021, "Conservative Data Sharing for Multi-Task Offline RL"):

- ``none``: each task trains on its own data only;
- ``all``: every transition, relabeled for task i, joins task i's batch;
- ``cds``: the paper's practical rule. A transition from task j, relabeled for task i, joins
  task i's batch iff its conservative Q-value under task i, Q(s, a, i), is >= the k-th
  percentile of Q(s', a', i) over task i's own dataset D_i (ties accepted);
- ``cds_basic``: the paper's "CDS (basic)" rule: the threshold is the expected value of the
  learned policy on task i's own states, E_{s ~ D_i}[V(s, i)] (for discrete actions and a
  greedy policy, V(s, i) = max_a Q(s, a, i)).

The threshold describes task i's *whole* dataset, not one batch: `RunningThreshold` keeps
each task's most recent own-data values (a window of several batches, or the whole dataset
when it fits) and takes the percentile (or mean) over them, so it moves with the Q-function
without the noise of a 32-sample batch statistic. Q comes from the Q-function being trained
on the effective (shared) dataset; the caller computes it.

Pure numpy; no Ray, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SHARING_MODES = ("none", "all", "cds", "cds_basic")
CDS_MODES = ("cds", "cds_basic")


class RunningThreshold:
    """Each task's CDS threshold over a running window of its own-data values.

    ``update(values)`` appends, per task, the values of that task's own transitions (cds:
    Q(s, a_data, i); cds_basic: V(s, i)); each task keeps the newest ``window`` of them (a
    ring buffer). ``thresholds()`` is, per task, numpy's ``percentile`` (linear interpolation)
    of the kept values for ``statistic="percentile"``, or their mean for ``"mean"``. Feeding
    a task's whole dataset with ``window`` >= its size gives the exact whole-dataset value.
    """

    def __init__(self, num_tasks: int, window: int, statistic: str = "percentile", percentile: float = 50.0,
                 task_names: Sequence[str] | None = None) -> None:
        if statistic not in ("percentile", "mean"):
            raise ValueError(f"unknown threshold statistic {statistic!r}; valid choices: ['percentile', 'mean']")
        if not 0.0 <= float(percentile) <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        if window < 1 or num_tasks < 1:
            raise ValueError(f"window and num_tasks must be >= 1, got window={window}, num_tasks={num_tasks}")
        self.num_tasks, self.window, self.statistic, self.percentile = num_tasks, int(window), statistic, float(percentile)
        self.names = list(task_names) if task_names is not None else [f"task {i}" for i in range(num_tasks)]
        self.values = np.zeros((num_tasks, self.window))
        self.filled = np.zeros(num_tasks, dtype=np.int64)  # how many slots hold a value (<= window)
        self.position = np.zeros(num_tasks, dtype=np.int64)  # next slot to write (the oldest once full)

    def update(self, values: Sequence[np.ndarray]) -> None:
        """Append each task's new own-data values (oldest dropped past ``window``)."""
        if len(values) != self.num_tasks:
            raise ValueError(f"need one array per task ({self.num_tasks}), got {len(values)}")
        for i, v in enumerate(values):
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            if not np.isfinite(v).all():
                raise ValueError(f"{self.names[i]}: own-data values contain NaN or inf")
            v = v[-self.window:]  # only the newest `window` can survive this update
            slots = (self.position[i] + np.arange(v.size)) % self.window
            self.values[i, slots] = v
            self.position[i] = (self.position[i] + v.size) % self.window
            self.filled[i] = min(self.window, self.filled[i] + v.size)

    def thresholds(self) -> np.ndarray:
        """Per task: the percentile (or mean) of its kept values; a task with none is refused by name."""
        empty = [self.names[i] for i in range(self.num_tasks) if self.filled[i] == 0]
        if empty:
            raise ValueError(f"{', '.join(empty)}: cds needs values of the task's own data to set its threshold, "
                             "and this task has none; collect data for it or use sharing 'all'")
        out = np.empty(self.num_tasks)
        for i in range(self.num_tasks):
            kept = self.values[i, : self.filled[i]]  # slot order does not matter for either statistic
            out[i] = np.percentile(kept, self.percentile) if self.statistic == "percentile" else kept.mean()
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue (``--resume``): the kept values and ring positions."""
        return {"window": self.window, "statistic": self.statistic, "percentile": self.percentile,
                "values": self.values.copy(), "filled": self.filled.copy(), "position": self.position.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (int(state["window"]), state["statistic"]) != (self.window, self.statistic) or \
                np.shape(state["values"]) != self.values.shape:
            raise ValueError(f"running threshold state for window={state['window']}, statistic={state['statistic']!r}, "
                             f"shape {np.shape(state['values'])} does not fit window={self.window}, "
                             f"statistic={self.statistic!r}, shape {self.values.shape}")
        self.percentile = float(state["percentile"])
        self.values = np.array(state["values"], dtype=np.float64)
        self.filled = np.array(state["filled"], dtype=np.int64)
        self.position = np.array(state["position"], dtype=np.int64)


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
    thresholds: np.ndarray | None = None,
) -> SharingDecision:
    """Decide, for every task i, which relabeled candidates join its batch.

    ``own_q[i]``: values under task i of task i's own transitions (cds: Q(s, a_data); cds_basic:
    V(s)); ``candidate_q[i]``: Q-values under task i of transitions relabeled from other tasks;
    ``candidate_source[i]``: the task each of those came from (same length);
    ``percentile``: k in [0, 100] (numpy's linear interpolation between order statistics);
    ``thresholds``: per-task thresholds already computed (a `RunningThreshold`); when given,
    ``own_q`` is not used. Without it the threshold comes from ``own_q`` alone (the k-th
    percentile for cds, the mean for cds_basic).
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

    given = None
    if thresholds is not None and mode in CDS_MODES:
        given = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if given.shape != (num_tasks,) or not np.isfinite(given).all():
            raise ValueError(f"thresholds must be {num_tasks} finite values, got {thresholds!r}")
    masks: list[np.ndarray] = []
    threshold = np.full(num_tasks, np.nan)
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
        elif given is not None:
            threshold[i] = given[i]
            mask = q >= threshold[i]  # ties accepted
        else:
            own = np.asarray(own_q[i], dtype=np.float64).reshape(-1)
            if own.size == 0:
                raise ValueError(f"{names[i]}: cds needs Q-values of the task's own data to set its threshold, "
                                 "and this task has no own data; use mode 'all' or collect data for it")
            if not np.isfinite(own).all():
                raise ValueError(f"{names[i]}: own_q contains NaN or inf")
            threshold[i] = np.percentile(own, percentile) if mode == "cds" else own.mean()
            mask = q >= threshold[i]  # ties accepted
        masks.append(mask)
        offered = np.bincount(source, minlength=num_tasks)
        accepted = np.bincount(source[mask], minlength=num_tasks)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction[i] = np.where(offered > 0, accepted / np.maximum(offered, 1), np.nan)
        fraction[i, i] = 1.0
    return SharingDecision(masks=masks, accepted_fraction=fraction, thresholds=threshold)


__all__ = ["CDS_MODES", "SHARING_MODES", "RunningThreshold", "SharingDecision", "share_transitions"]
