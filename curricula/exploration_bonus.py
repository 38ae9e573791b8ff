"""The exploration bonus: which items earn a reward the first time they are obtained in an episode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ExplorationBonus", "BONUS_MODES", "BONUS_ITEMS", "NON_TASK_ITEM_RULES"]

BONUS_MODES = ("off", "static", "dynamic")
BONUS_ITEMS = ("tasks", "all")
NON_TASK_ITEM_RULES = ("until_obtained_reliably", "always")
_FIELDS = ("mode", "size", "threshold", "items", "non_task_items")


@dataclass(frozen=True)
class ExplorationBonus:
    """Settings of the within-episode exploration bonus (Kanitscheider et al. 2021, section 3).

    Attributes:
        mode: "off" (no bonus), "static" (every eligible item earns it, for the whole run) or
            "dynamic" (only eligible items the agent cannot yet obtain reliably).
        size: reward added per newly obtained bonus item (the goal pays 1).
        threshold: a rate at or above which an item counts as reliably obtained and stops
            earning the dynamic bonus.
        items: which items are eligible. "tasks" (the paper's form: every item was a task there,
            so the bonus fades as tasks are mastered): only items that are also tasks, judged by
            their success rate as a goal. "all": every item; items that are not tasks follow
            `non_task_items`.
        non_task_items: with ``items="all"``, how a dynamic bonus judges an item that is never a
            goal. "until_obtained_reliably": it pays while the share of recent episodes that
            obtain it is below `threshold` (so farming it switches it off). "always": it pays for
            the whole run (the behaviour before this setting existed; it taught PPO to farm
            items on small task sets).
    """

    mode: str = "dynamic"
    size: float = 0.1
    threshold: float = 0.5
    items: str = "tasks"
    non_task_items: str = "until_obtained_reliably"

    def __post_init__(self) -> None:
        if self.mode not in BONUS_MODES:
            raise ValueError(f"ExplorationBonus.mode must be one of {BONUS_MODES}, got {self.mode!r}")
        if self.items not in BONUS_ITEMS:
            raise ValueError(f"ExplorationBonus.items must be one of {BONUS_ITEMS}, got {self.items!r}")
        if self.non_task_items not in NON_TASK_ITEM_RULES:
            raise ValueError(
                f"ExplorationBonus.non_task_items must be one of {NON_TASK_ITEM_RULES}, got {self.non_task_items!r}"
            )
        if not np.isfinite(self.size) or self.size < 0:
            raise ValueError(f"ExplorationBonus.size must be a finite number >= 0, got {self.size}")
        if not (0.0 <= self.threshold <= 1.0):
            raise ValueError(f"ExplorationBonus.threshold must be in [0, 1], got {self.threshold}")

    @classmethod
    def from_config(cls, value: "ExplorationBonus | dict | str | None") -> "ExplorationBonus":
        """Accept an instance, a dict of fields, a mode name, or None (off)."""
        if value is None:
            return cls(mode="off")
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, dict):
            unknown = set(value) - set(_FIELDS)
            if unknown:
                raise ValueError(
                    f"unknown ExplorationBonus field(s) {sorted(unknown)}; valid: {', '.join(_FIELDS)}"
                )
            return cls(**value)
        raise ValueError(f"bonus must be an ExplorationBonus, dict, mode name or None, got {type(value).__name__}")

    def as_dict(self) -> dict[str, object]:
        """The fields, for a scheduler's `config()`."""
        return {name: getattr(self, name) for name in _FIELDS}

    def bonus_items(
        self,
        item_success_rate: np.ndarray,
        is_task: np.ndarray | None = None,
        item_obtained_rate: np.ndarray | None = None,
    ) -> np.ndarray:
        """Bool mask over items: which earn the bonus now.

        Args:
            item_success_rate: each item's success rate as a goal (read for items that are tasks).
            is_task: bool per item, whether the item is also a task (default: every item is).
            item_obtained_rate: share of recent episodes that obtained each item, whatever
                the goal (read for non-task items under "until_obtained_reliably"; default 0).
        """
        shape = np.shape(item_success_rate)
        is_task = np.ones(shape, dtype=bool) if is_task is None else np.asarray(is_task, dtype=bool)
        if self.mode == "off":
            return np.zeros(shape, dtype=bool)
        eligible = is_task.copy() if self.items == "tasks" else np.ones(shape, dtype=bool)
        if self.mode == "static":
            return eligible
        # A task item pays until its success rate as a goal reaches the threshold (a task
        # never tried has rate 0; NaN, unknown, counts as not reliable).
        pays = is_task & ~(np.asarray(item_success_rate, dtype=np.float64) >= self.threshold)
        if self.items == "all":
            if self.non_task_items == "always":
                pays |= ~is_task
            else:
                rate = np.zeros(shape) if item_obtained_rate is None else np.asarray(item_obtained_rate, np.float64)
                pays |= ~is_task & ~(rate >= self.threshold)
        return pays & eligible
