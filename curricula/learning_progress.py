"""Learning-progress scheduling (Kanitscheider et al. 2021, arXiv:2106.14876)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import Curriculum
from .sampling import learning_progress_probabilities

__all__ = ["LearningProgressCurriculum"]


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
        untried_weight: each never-measured task gets ``untried_weight / num_tasks``
            (>= 0; 1.0 = its uniform share, 0 = only once others are exhausted).
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
        **kwargs: Any,
    ) -> None:
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if not (0.0 <= uniform_mix <= 1.0):
            raise ValueError(f"uniform_mix must be in [0, 1], got {uniform_mix}")
        if not (np.isfinite(untried_weight) and untried_weight >= 0):
            raise ValueError(f"untried_weight must be a finite number >= 0, got {untried_weight}")
        self.temperature = float(temperature)
        self.uniform_mix = float(uniform_mix)
        self.untried_weight = float(untried_weight)
        super().__init__(task_names, item_names, **kwargs)
        self._params.update(temperature=self.temperature, uniform_mix=self.uniform_mix, untried_weight=self.untried_weight)

    def _compute_probabilities(self) -> np.ndarray:
        est = self.estimates
        return learning_progress_probabilities(
            self.learning_progress(),
            est.success_rate,
            est.measurements > 0,
            temperature=self.temperature,
            uniform_mix=self.uniform_mix,
            untried_weight=self.untried_weight,
        )
