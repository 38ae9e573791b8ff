"""Gradient combiners (one method per file) and the ``build_combiner`` factory."""

from __future__ import annotations

import inspect

from policies.combiners.base import GradientCombiner
from policies.combiners.mgda import MGDA
from policies.combiners.min_norm import min_norm_two, min_norm_weights
from policies.combiners.pareto_mtl import ParetoMTL, preference_vectors
from policies.combiners.pcgrad import PCGrad
from policies.combiners.sum import SumCombiner

COMBINERS: dict[str, type[GradientCombiner]] = {
    "sum": SumCombiner,
    "pcgrad": PCGrad,
    "mgda": MGDA,
    "pareto_mtl": ParetoMTL,
}


def build_combiner(name: str, num_tasks: int, **params: object) -> GradientCombiner:
    """Build combiner ``name``; unknown names or params raise ValueError listing the valid ones."""
    key = str(name).lower().replace("-", "_")
    key = {"paretomtl": "pareto_mtl", "equal": "sum"}.get(key, key)
    if key not in COMBINERS:
        raise ValueError(f"unknown combiner {name!r}; valid choices: {sorted(COMBINERS)}")
    cls = COMBINERS[key]
    valid = sorted(k for k in inspect.signature(cls.__init__).parameters if k not in {"self", "num_tasks"})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for combiner {key!r}; valid parameters: {valid}")
    return cls(num_tasks, **params)


__all__ = [
    "COMBINERS",
    "GradientCombiner",
    "MGDA",
    "PCGrad",
    "ParetoMTL",
    "SumCombiner",
    "build_combiner",
    "min_norm_two",
    "min_norm_weights",
    "preference_vectors",
]
