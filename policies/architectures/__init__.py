"""Multi-task network architectures and the ``build_network`` factory."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from policies.architectures.base import InputDim, MultiTaskNetwork, mlp, route_by_task
from policies.architectures.care import CARE
from policies.architectures.independent import Independent
from policies.architectures.model_patch import ModelPatch
from policies.architectures.separate_bottom import SeparateBottom
from policies.architectures.shared_bottom import SharedBottom
from policies.architectures.soft_modular import SoftModular

ARCHITECTURES: dict[str, type[MultiTaskNetwork]] = {
    "shared_bottom": SharedBottom,
    "separate_bottom": SeparateBottom,
    "model_patch": ModelPatch,
    "soft_modular": SoftModular,
    "independent": Independent,
    "care": CARE,
}


def _normalise(name: str) -> str:
    # Accept "SharedBottom", "shared-bottom" and "shared_bottom" alike.
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out.replace("-", "_").lower()


def build_network(
    name: str,
    input_dim: InputDim,
    output_dim: int,
    num_tasks: int,
    hidden: Sequence[int] = (64, 64),
    **knobs: object,
) -> MultiTaskNetwork:
    """Build architecture ``name``; unknown names or knobs raise ValueError listing the valid ones."""
    key = _normalise(str(name))
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; valid choices: {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[key]
    params = inspect.signature(cls.__init__).parameters
    valid = sorted(k for k in params if k not in {"self", "input_dim", "output_dim", "num_tasks", "hidden"})
    unknown = sorted(set(knobs) - set(valid))
    if unknown:
        raise ValueError(f"unknown knob(s) {unknown} for architecture {key!r}; valid knobs: {valid}")
    return cls(input_dim, output_dim, num_tasks, hidden=tuple(hidden), **knobs)


__all__ = [
    "ARCHITECTURES",
    "CARE",
    "Independent",
    "ModelPatch",
    "MultiTaskNetwork",
    "SeparateBottom",
    "SharedBottom",
    "SoftModular",
    "build_network",
    "mlp",
    "route_by_task",
]
