"""Task affinity by lookahead (TAG: Fifty et al. 2021, "Efficiently Identifying Task Groupings").

During co-training, every few steps and for each source task i: take one SGD
step on the shared parameters with task i's loss alone, re-evaluate every task
j's loss on the same batch, and restore the parameters:

    affinity[i -> j] = 1 - L_j(after step on i) / L_j(before)      (optionally / lr)

Positive: a step for i also lowers j's loss (i helps j); negative: it hurts j.
Losses that can be negative (RL objectives such as PPO's clipped surrogate plus
value and entropy terms) use ``signed_losses=True``: ``(L_j(before) - L_j(after)) /
|L_j(before)|``, which equals the formula above for positive losses and keeps
"positive = helps" when the loss is below zero.
``TaskAffinity`` keeps the running average over all measurements.  Pure numpy:
the lookahead itself (torch) lives in ``policies.affinity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def lookahead_affinity(
    losses_before: Sequence[float] | np.ndarray,
    losses_after: Sequence[Sequence[float]] | np.ndarray,
    lr: float | None = None,
    signed_losses: bool = False,
) -> np.ndarray:
    """[T x T] affinity of one measurement: ``1 - after[i, j] / before[j]`` (divided by ``lr`` if given).

    ``losses_before[j]``: task j's loss before any lookahead step; ``losses_after[i, j]``:
    task j's loss after the step on task i.  Rows of a source task that was not
    measured (nan) and columns of a task with no loss (nan, or before <= 0) stay nan.
    ``signed_losses``: ``(before[j] - after[i, j]) / |before[j]|`` instead, defined for
    any nonzero ``before[j]`` (only before == 0 gives nan).
    """
    before = np.asarray(losses_before, dtype=np.float64).reshape(-1)
    after = np.asarray(losses_after, dtype=np.float64)
    t = before.size
    if after.shape != (t, t):
        raise ValueError(f"losses_after must be [{t} x {t}] (source task x measured task), got shape {after.shape}")
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        if signed_losses:
            scale = np.abs(before)[None, :]
            affinity = np.where(scale > 0, (before[None, :] - after) / scale, np.nan)
        else:
            affinity = 1.0 - np.where(before[None, :] > 0, after / before[None, :], np.nan)
    return affinity / lr if lr is not None else affinity


class TaskAffinity:
    """Running average of lookahead affinities, entry by entry (nan entries are skipped).

    With ``signed_losses`` the average is a ratio of sums, ``sum(before_j - after_ij) /
    sum(|before_j|)``, not a mean of per-measurement ratios: a loss that crosses zero
    (PPO's does) makes a single ratio arbitrarily large, and one such measurement would
    otherwise outweigh every other one (seen on Simon Says: -3.4 against entries of 0.01).
    """

    def __init__(self, task_names: Sequence[str], lr_normalized: bool = False, signed_losses: bool = False) -> None:
        self.task_names = tuple(task_names)
        if len(self.task_names) < 1 or len(set(self.task_names)) != len(self.task_names):
            raise ValueError(f"task_names must be unique and non-empty, got {list(task_names)}")
        self.lr_normalized = bool(lr_normalized)
        self.signed_losses = bool(signed_losses)
        t = len(self.task_names)
        self._sum = np.zeros((t, t))
        self._scale = np.zeros((t, t))  # signed_losses: sum of |before_j| over the measurements
        self._count = np.zeros((t, t), dtype=np.int64)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def update(self, losses_before: Sequence[float] | np.ndarray, losses_after: np.ndarray, lr: float | None = None) -> np.ndarray:
        """Add one measurement; returns its [T x T] affinity. ``lr`` is required when lr_normalized."""
        if self.lr_normalized and lr is None:
            raise ValueError("this TaskAffinity divides by the learning rate: pass lr")
        value = lookahead_affinity(losses_before, losses_after, lr if self.lr_normalized else None, self.signed_losses)
        if value.shape != self._sum.shape:
            raise ValueError(f"measurement is {value.shape[0]} tasks, this TaskAffinity has {self.num_tasks}")
        seen = np.isfinite(value)
        if self.signed_losses:
            before = np.broadcast_to(np.asarray(losses_before, dtype=np.float64).reshape(1, -1), value.shape)
            step = np.asarray(losses_after, dtype=np.float64)
            scale = 1.0 / lr if self.lr_normalized else 1.0
            self._sum[seen] += (before[seen] - step[seen]) * scale
            self._scale[seen] += np.abs(before[seen])
        else:
            self._sum[seen] += value[seen]
        self._count += seen
        return value

    @property
    def counts(self) -> np.ndarray:
        """How many measurements each entry averages."""
        return self._count.copy()

    def matrix(self) -> np.ndarray:
        """[T x T] mean affinity, row = source task i, column = task j it acts on; nan where never measured."""
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.signed_losses:
                return np.where(self._scale > 0, self._sum / self._scale, np.nan)
            return np.where(self._count > 0, self._sum / np.maximum(self._count, 1), np.nan)

    def state_dict(self) -> dict[str, Any]:
        return {"task_names": list(self.task_names), "lr_normalized": self.lr_normalized,
                "signed_losses": self.signed_losses,
                "sum": self._sum.tolist(), "scale": self._scale.tolist(), "count": self._count.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["task_names"]) != self.task_names:
            raise ValueError(f"state is for tasks {state['task_names']}, this TaskAffinity has {list(self.task_names)}")
        self.lr_normalized = bool(state["lr_normalized"])
        self.signed_losses = bool(state.get("signed_losses", False))
        self._sum = np.asarray(state["sum"], dtype=np.float64)
        self._scale = np.asarray(state.get("scale", np.zeros_like(self._sum)), dtype=np.float64)
        self._count = np.asarray(state["count"], dtype=np.int64)
