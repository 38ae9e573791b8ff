"""The data that flows between environments and a curriculum.

`EpisodeOutcomes` is a columnar batch of finished episodes (one numpy array per
field) so that thousands of episodes cross a process boundary as a handful of
buffers and a scheduler absorbs them with vectorised numpy.
`CurriculumDistribution` is what a scheduler publishes: task probabilities and
the items that currently earn an exploration bonus, with a version number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["EpisodeOutcomes", "CurriculumDistribution"]


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _require_finite(name: str, column: np.ndarray) -> None:
    """A return column must hold finite numbers; the error names the field and the first bad row."""
    if column.dtype.kind not in "biuf":
        raise ValueError(f"EpisodeOutcomes.{name} must be numeric, got dtype {column.dtype}")
    finite = np.isfinite(column)
    if not finite.all():
        i = _first_bad(~finite)
        raise ValueError(
            f"EpisodeOutcomes.{name}[{i}] = {column[i]} is not finite (NaN or inf); returns must be finite numbers"
        )


@dataclass
class EpisodeOutcomes:
    """A batch of finished episodes, one row per episode.

    Attributes:
        task: int64 (n,) task index of each episode.
        success: bool (n,) whether the goal was reached.
        episode_return: float64 (n,) undiscounted return from the environment.
        length: int64 (n,) environment steps in the episode.
        items_obtained: bool (n, num_items) items obtained at least once in the
            episode, or None when the task family has no items.
        evaluation: True when the whole batch comes from evaluation episodes
            (not training); schedulers measuring success from evaluation use
            only such batches.
        bonus_return: float64 (n,) exploration bonus paid in each episode (on top of
            `episode_return`), or None when no bonus was paid.
    """

    task: np.ndarray
    success: np.ndarray
    episode_return: np.ndarray
    length: np.ndarray
    items_obtained: np.ndarray | None = None
    evaluation: bool = False
    bonus_return: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Lenient conversion only (lists -> arrays); `validate` judges the content
        # so that a bad batch is reported with the field that is wrong.
        self.task = np.asarray(self.task)
        self.success = np.asarray(self.success)
        self.episode_return = np.asarray(self.episode_return)
        self.length = np.asarray(self.length)
        if self.items_obtained is not None:
            self.items_obtained = np.asarray(self.items_obtained)
        if self.bonus_return is not None:
            self.bonus_return = np.asarray(self.bonus_return)
        self.evaluation = bool(self.evaluation)

    def __len__(self) -> int:
        return int(self.task.shape[0]) if self.task.ndim else 1

    @classmethod
    def empty(cls, num_items: int | None = None, evaluation: bool = False) -> "EpisodeOutcomes":
        """A batch with no episodes (with an items column when `num_items` is given)."""
        items = None if num_items is None else np.zeros((0, num_items), dtype=bool)
        return cls(
            task=np.zeros(0, np.int64),
            success=np.zeros(0, bool),
            episode_return=np.zeros(0, np.float64),
            length=np.zeros(0, np.int64),
            items_obtained=items,
            evaluation=evaluation,
        )

    @classmethod
    def concat(cls, batches: Sequence["EpisodeOutcomes"]) -> "EpisodeOutcomes":
        """Join batches in order. All must agree on `evaluation` and on having items."""
        batches = list(batches)
        if not batches:
            return cls.empty()
        evaluation = {b.evaluation for b in batches}
        if len(evaluation) != 1:
            raise ValueError("EpisodeOutcomes.concat: cannot mix evaluation and training batches")
        has_items = {b.items_obtained is not None for b in batches}
        if len(has_items) != 1:
            raise ValueError(
                "EpisodeOutcomes.concat: some batches have items_obtained and some have None"
            )
        items = (
            np.concatenate([b.items_obtained for b in batches], axis=0)
            if has_items.pop()
            else None
        )
        # A batch without a bonus column paid no bonus: zeros keep the rows aligned.
        bonus = None
        if any(b.bonus_return is not None for b in batches):
            bonus = np.concatenate([
                b.bonus_return if b.bonus_return is not None else np.zeros(len(b)) for b in batches
            ])
        return cls(
            task=np.concatenate([b.task for b in batches]),
            success=np.concatenate([b.success for b in batches]),
            episode_return=np.concatenate([b.episode_return for b in batches]),
            length=np.concatenate([b.length for b in batches]),
            items_obtained=items,
            evaluation=evaluation.pop(),
            bonus_return=bonus,
        )

    def validate(self, num_tasks: int, num_items: int | None = None) -> None:
        """Raise ValueError naming the field and row when the batch is malformed.

        Checks: 1-D columns of equal length and the right kinds, task ids in
        ``[0, num_tasks)``, finite returns, non-negative lengths, and an items
        column of shape ``(n, num_items)`` when `num_items` is given.
        """
        if self.task.ndim != 1:
            raise ValueError(f"EpisodeOutcomes.task must be 1-D, got shape {self.task.shape}")
        n = self.task.shape[0]
        columns = {
            "success": self.success,
            "episode_return": self.episode_return,
            "length": self.length,
        }
        if self.bonus_return is not None:
            columns["bonus_return"] = self.bonus_return
        for name, column in columns.items():
            if column.shape != (n,):
                raise ValueError(
                    f"EpisodeOutcomes.{name} has shape {column.shape}; expected ({n},) to match task"
                )
        if n and self.task.dtype.kind not in "iu":
            raise ValueError(
                f"EpisodeOutcomes.task must hold integer task ids, got dtype {self.task.dtype}"
            )
        if n and self.success.dtype.kind not in "biu":
            raise ValueError(
                f"EpisodeOutcomes.success must be bool, got dtype {self.success.dtype}"
            )
        if n and self.success.dtype.kind in "iu" and ((self.success < 0) | (self.success > 1)).any():
            raise ValueError("EpisodeOutcomes.success must be bool (0 or 1)")
        if n and self.length.dtype.kind not in "iu":
            raise ValueError(
                f"EpisodeOutcomes.length must hold integer step counts, got dtype {self.length.dtype}"
            )
        if n and self.episode_return.dtype.kind not in "biuf":
            raise ValueError(
                f"EpisodeOutcomes.episode_return must be numeric, got dtype {self.episode_return.dtype}"
            )
        if n:
            bad = (self.task < 0) | (self.task >= num_tasks)
            if bad.any():
                i = _first_bad(bad)
                raise ValueError(
                    f"EpisodeOutcomes.task[{i}] = {int(self.task[i])} is not a task id; "
                    f"valid ids are 0..{num_tasks - 1} ({num_tasks} tasks)"
                )
            _require_finite("episode_return", self.episode_return)
            if self.bonus_return is not None:
                _require_finite("bonus_return", self.bonus_return)
            if (self.length < 0).any():
                i = _first_bad(self.length < 0)
                raise ValueError(
                    f"EpisodeOutcomes.length[{i}] = {int(self.length[i])} is negative"
                )
        if self.items_obtained is not None:
            expected = (n, num_items) if num_items is not None else (n, self.items_obtained.shape[-1])
            if self.items_obtained.ndim != 2 or self.items_obtained.shape != expected:
                raise ValueError(
                    f"EpisodeOutcomes.items_obtained has shape {self.items_obtained.shape}; "
                    f"expected {expected} (episodes x items)"
                )
            if self.items_obtained.dtype != np.bool_:
                raise ValueError(
                    f"EpisodeOutcomes.items_obtained must be bool, got dtype {self.items_obtained.dtype}"
                )


@dataclass(frozen=True, eq=False)
class CurriculumDistribution:
    """What a scheduler publishes; read-only arrays so a local copy stays intact.

    Attributes:
        probabilities: float64 (num_tasks,) sampling probability of each task (sums to 1).
        bonus_items: bool (num_items,) items that earn the exploration bonus now.
        version: increases whenever probabilities or the bonus set change.
    """

    probabilities: np.ndarray
    bonus_items: np.ndarray
    version: int = 0

    def __post_init__(self) -> None:
        probabilities = np.asarray(self.probabilities, dtype=np.float64)
        bonus_items = np.asarray(self.bonus_items, dtype=bool)
        # Copy only what someone else could still write to; read-only input is shared.
        if probabilities.flags.writeable:
            probabilities = probabilities.copy()
            probabilities.setflags(write=False)
        if bonus_items.flags.writeable:
            bonus_items = bonus_items.copy()
            bonus_items.setflags(write=False)
        object.__setattr__(self, "probabilities", probabilities)
        object.__setattr__(self, "bonus_items", bonus_items)
        object.__setattr__(self, "version", int(self.version))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CurriculumDistribution):
            return NotImplemented
        return (
            self.version == other.version
            and np.array_equal(self.probabilities, other.probabilities)
            and np.array_equal(self.bonus_items, other.bonus_items)
        )

    @classmethod
    def uniform(cls, num_tasks: int, num_items: int = 0, version: int = -1) -> "CurriculumDistribution":
        """Uniform over tasks with no bonus items (what a wrapper uses before its first refresh)."""
        return cls(np.full(num_tasks, 1.0 / num_tasks), np.zeros(num_items, bool), version)
