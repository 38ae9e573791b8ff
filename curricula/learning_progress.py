"""Learning-progress scheduling (Kanitscheider et al. 2021, arXiv:2106.14876)."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from .base import Curriculum
from .sampling import learning_progress_probabilities

__all__ = ["LearningProgressCurriculum", "learning_progress_setting_error"]


def learning_progress_setting_error(
    uniform_mix: float, untried_weight: float, success_source: str = "online"
) -> str | None:
    """Why a learning-progress setting can leave a task untried for ever, or None when it cannot.

    With ``untried_weight=0`` a never-measured task gets probability 0 from the
    learning-progress rule, and with ``uniform_mix=0`` nothing else gives it
    any: with online success measurement (each training episode measures its
    task), a task that was not sampled before the first update is never
    sampled, so never measured. With ``success_source="evaluation"`` the
    evaluation rounds measure every task, so the setting is allowed.
    Pure function, for config validation at the start of a run.
    """
    if untried_weight == 0 and uniform_mix == 0 and success_source != "evaluation":
        return (
            "untried_weight=0 with uniform_mix=0 never samples a task that was not tried before the "
            "first update (its probability stays 0 for ever); set uniform_mix > 0 or untried_weight > 0"
        )
    return None


class LearningProgressCurriculum(Curriculum):
    """Samples tasks in proportion to a sigmoid of their z-scored learning progress.

    Takes every argument of `Curriculum` (alphas, theta, signed, random baseline,
    success source, bonus) plus:

    Args:
        temperature: divides the z-scored LP before the sigmoid (> 0; lower = sharper).
        uniform_mix: fraction of probability spread uniformly over all tasks, in [0, 1].
            Default 0.1: with online measurement a task whose episodes have all
            failed has LP = 0 and success = 0, gets probability 0 and would never
            be measured again (benchmarks/curriculum_sim.py: 1 item mastered with
            0.0 instead of ~70); the mix keeps re-testing it.
        untried_weight: until its first measurement, each task gets ``untried_weight / num_tasks``
            of the probability (>= 0; the untried tasks' total is capped at 1; default 1.0 =
            its uniform share). With 0 an untried task gets nothing from the learning-progress
            rule and is sampled only through ``uniform_mix``: with ``uniform_mix=0`` too (and
            online success) it is never tried, so that combination warns here, and
            `learning_progress_setting_error` reports it for config validation.
        by_product_weight: a task that has never succeeded as a goal but whose item was
            obtained in episodes with other goals (e.g. for the exploration bonus) gets
            ``by_product_weight / num_tasks`` of the probability (>= 0; default 1.0, its
            uniform share; 0 = the rule without it). Without it such a task has LP 0 and
            success 0 and sits at the ``uniform_mix`` floor, where its few goal episodes
            may never succeed; with it, the bonus and the curriculum hand it on.
        prerequisites: per task, the ids of the tasks it needs (its recipe chain), or None
            when the task family has no such structure.
        frontier_weight: a task that has never succeeded but whose prerequisite tasks all
            succeed reliably (success rate >= the bonus threshold; a task with none is
            always there) is at the frontier and gets ``frontier_weight / num_tasks``
            (>= 0; default 1.0; 0 = off). A task whose item no episode ever obtains (a
            furnace needs 8 cobblestone: no random policy finds it) is then still practised
            once everything it needs is learnt.
    """

    kind = "learning_progress"

    def __init__(
        self,
        task_names: Sequence[str],
        item_names: Sequence[str] | None = None,
        *,
        temperature: float = 1.0,
        uniform_mix: float = 0.1,
        untried_weight: float = 1.0,
        by_product_weight: float = 1.0,
        prerequisites: Sequence[Sequence[int]] | None = None,
        frontier_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if not (0.0 <= uniform_mix <= 1.0):
            raise ValueError(f"uniform_mix must be in [0, 1], got {uniform_mix}")
        if not (np.isfinite(untried_weight) and untried_weight >= 0):
            raise ValueError(f"untried_weight must be a finite number >= 0, got {untried_weight}")
        for name, value in (("by_product_weight", by_product_weight), ("frontier_weight", frontier_weight)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        num_tasks = len(task_names)
        if prerequisites is not None:
            if len(prerequisites) != num_tasks:
                raise ValueError(f"prerequisites must list one entry per task ({num_tasks}), got {len(prerequisites)}")
            bad = [p for row in prerequisites for p in row if not 0 <= int(p) < num_tasks]
            if bad:
                raise ValueError(f"prerequisites name task ids outside 0..{num_tasks - 1}: {bad[:5]}")
        self.prerequisites = None if prerequisites is None else [sorted({int(p) for p in row}) for row in prerequisites]
        # [task, prerequisite task] as a matrix, so the frontier test is one array op per refresh
        self._needs: np.ndarray | None = None
        if self.prerequisites is not None:
            self._needs = np.zeros((num_tasks, num_tasks), dtype=bool)
            for row, needed in enumerate(self.prerequisites):
                self._needs[row, needed] = True
        problem = learning_progress_setting_error(uniform_mix, untried_weight, kwargs.get("success_source", "online"))
        if problem is not None:
            warnings.warn(problem, RuntimeWarning, stacklevel=2)
        self.temperature = float(temperature)
        self.uniform_mix = float(uniform_mix)
        self.untried_weight = float(untried_weight)
        self.by_product_weight = float(by_product_weight)
        self.frontier_weight = float(frontier_weight)
        super().__init__(task_names, item_names, **kwargs)
        self._params.update(temperature=self.temperature, uniform_mix=self.uniform_mix, untried_weight=self.untried_weight,
                            by_product_weight=self.by_product_weight, prerequisites=self.prerequisites,
                            frontier_weight=self.frontier_weight)

    def _compute_probabilities(self) -> np.ndarray:
        est = self.estimates
        return learning_progress_probabilities(
            self.learning_progress(),
            est.success_rate,
            est.measurements > 0,
            temperature=self.temperature,
            uniform_mix=self.uniform_mix,
            untried_weight=self.untried_weight,
            reserve_weight=self.reserve_weights(),
        )

    def at_frontier(self) -> np.ndarray:
        """Bool per task: never succeeded, and every prerequisite task succeeds reliably."""
        if self._needs is None:
            return np.zeros(self.num_tasks, dtype=bool)
        unreliable = self.estimates.success_rate < self.bonus.threshold
        ready = ~(self._needs & unreliable).any(axis=1)
        return (self.successes == 0) & ready

    def reserve_weights(self) -> np.ndarray:
        """Per task, the reserved share (in units of 1/num_tasks) of a never-succeeded task
        within reach: its item obtained as a by-product, or at the frontier (0 elsewhere)."""
        weights = np.zeros(self.num_tasks)
        if self.by_product_weight > 0:
            weights[self.obtained_as_by_product()] = self.by_product_weight
        if self.frontier_weight > 0:
            frontier = self.at_frontier()
            weights[frontier] = np.maximum(weights[frontier], self.frontier_weight)
        return weights
