"""Task schedulers (curricula): plain Python + numpy, no Ray.

`build_curriculum(kind, task_names, item_names, **params)` is the entry point
used by configs; the classes are exported for direct use and tests.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

from .base import SUCCESS_SOURCES, Curriculum, UniformCurriculum
from .exploration_bonus import BONUS_MODES, ExplorationBonus
from .learning_progress import LearningProgressCurriculum, learning_progress_setting_error
from .outcomes import CurriculumDistribution, EpisodeOutcomes
from .sampling import entropy, learning_progress_probabilities
from .success_estimates import SuccessEstimates, normalise_against_random, reweight, sequential_ema

__all__ = [
    "CURRICULUM_KINDS",
    "BONUS_MODES",
    "SUCCESS_SOURCES",
    "Curriculum",
    "CurriculumDistribution",
    "EpisodeOutcomes",
    "ExplorationBonus",
    "LearningProgressCurriculum",
    "SuccessEstimates",
    "UniformCurriculum",
    "build_curriculum",
    "curriculum_parameters",
    "entropy",
    "learning_progress_probabilities",
    "learning_progress_setting_error",
    "normalise_against_random",
    "reweight",
    "sequential_ema",
]

CURRICULUM_KINDS: dict[str, type[Curriculum]] = {
    "uniform": UniformCurriculum,
    "learning_progress": LearningProgressCurriculum,
}


def curriculum_parameters(kind: str) -> list[str]:
    """The keyword parameters `build_curriculum` accepts for `kind`."""
    cls = _curriculum_class(kind)
    names: list[str] = []
    for klass in (cls, Curriculum):
        for name, param in inspect.signature(klass.__init__).parameters.items():
            if param.kind is param.KEYWORD_ONLY and name not in names:
                names.append(name)
    return names


def _curriculum_class(kind: str) -> type[Curriculum]:
    try:
        return CURRICULUM_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown curriculum kind {kind!r}; valid kinds: {sorted(CURRICULUM_KINDS)}"
        ) from None


def build_curriculum(
    kind: str,
    task_names: Sequence[str],
    item_names: Sequence[str] | None = None,
    **params: Any,
) -> Curriculum:
    """Build a scheduler by name ("uniform" or "learning_progress") with keyword settings.

    Unknown settings are rejected with the list of valid ones.
    """
    cls = _curriculum_class(kind)
    valid = curriculum_parameters(kind)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown {kind} curriculum setting(s) {unknown}; valid settings: {valid}")
    return cls(task_names, item_names, **params)
