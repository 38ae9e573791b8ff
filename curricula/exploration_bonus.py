"""The exploration bonus: which items earn a reward the first time they are obtained in an episode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ExplorationBonus", "BONUS_MODES"]

BONUS_MODES = ("off", "static", "dynamic")


@dataclass(frozen=True)
class ExplorationBonus:
    """Settings of the within-episode exploration bonus.

    Attributes:
        mode: "off" (no bonus), "static" (every item earns it) or "dynamic"
            (only items whose current success rate *as a goal* is below
            `threshold`; items that are not tasks, or were never tried, count
            as not mastered and earn it).
        size: reward added per newly obtained bonus item (applied by the env wrapper).
        threshold: success rate at or above which an item stops earning the bonus.
    """

    mode: str = "dynamic"
    size: float = 0.1
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in BONUS_MODES:
            raise ValueError(f"ExplorationBonus.mode must be one of {BONUS_MODES}, got {self.mode!r}")
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
            unknown = set(value) - {"mode", "size", "threshold"}
            if unknown:
                raise ValueError(
                    f"unknown ExplorationBonus field(s) {sorted(unknown)}; valid: mode, size, threshold"
                )
            return cls(**value)
        raise ValueError(f"bonus must be an ExplorationBonus, dict, mode name or None, got {type(value).__name__}")

    def bonus_items(self, item_success_rate: np.ndarray) -> np.ndarray:
        """Bool mask over items: which earn the bonus given each item's success rate as a goal.

        `item_success_rate` holds NaN for items that are not tasks (never mastered).
        """
        if self.mode == "off":
            return np.zeros(item_success_rate.shape, dtype=bool)
        if self.mode == "static":
            return np.ones(item_success_rate.shape, dtype=bool)
        # NaN < threshold is False, so "not a task" must be tested explicitly.
        return ~(item_success_rate >= self.threshold)
