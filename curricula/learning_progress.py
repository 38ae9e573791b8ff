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
        **kwargs: Any,
    ) -> None:
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if not (0.0 <= uniform_mix <= 1.0):
            raise ValueError(f"uniform_mix must be in [0, 1], got {uniform_mix}")
        if not (np.isfinite(untried_weight) and untried_weight >= 0):
            raise ValueError(f"untried_weight must be a finite number >= 0, got {untried_weight}")
        if not (np.isfinite(by_product_weight) and by_product_weight >= 0):
            raise ValueError(f"by_product_weight must be a finite number >= 0, got {by_product_weight}")
        problem = learning_progress_setting_error(uniform_mix, untried_weight, kwargs.get("success_source", "online"))
        if problem is not None:
            warnings.warn(problem, RuntimeWarning, stacklevel=2)
        self.temperature = float(temperature)
        self.uniform_mix = float(uniform_mix)
        self.untried_weight = float(untried_weight)
        self.by_product_weight = float(by_product_weight)
        super().__init__(task_names, item_names, **kwargs)
        self._params.update(temperature=self.temperature, uniform_mix=self.uniform_mix, untried_weight=self.untried_weight,
                            by_product_weight=self.by_product_weight)

    def _compute_probabilities(self) -> np.ndarray:
        est = self.estimates
        return learning_progress_probabilities(
            self.learning_progress(),
            est.success_rate,
            est.measurements > 0,
            temperature=self.temperature,
            uniform_mix=self.uniform_mix,
            untried_weight=self.untried_weight,
            by_product=self.obtained_as_by_product() if self.by_product_weight > 0 else None,
            by_product_weight=self.by_product_weight,
        )
