"""Multi-task networks and gradient combiners (torch only, no Ray).

- ``build_network(name, input_dim, output_dim, num_tasks, hidden=..., **knobs)``
  builds one of ``SharedBottom``, ``SeparateBottom``, ``ModelPatch``,
  ``SoftModular``, ``Independent``, ``CARE``.
- ``build_combiner(name, num_tasks, **params)`` builds ``sum``, ``pcgrad``,
  ``mgda`` or ``pareto_mtl``.
- ``apply_multitask_backward(model, task_losses, combiner, allreduce=None)``
  computes per-task gradients, (optionally) averages them over data-parallel
  workers, combines them and writes ``.grad``.
"""

from policies.architectures import (
    ARCHITECTURES,
    CARE,
    Independent,
    ModelPatch,
    MultiTaskNetwork,
    SeparateBottom,
    SharedBottom,
    SoftModular,
    build_network,
    mlp,
)
from policies.backward import (
    MultitaskBackwardStats,
    apply_multitask_backward,
    summed_backward,
    torch_distributed_allreduce,
)
from policies.combiners import (
    COMBINERS,
    GradientCombiner,
    MGDA,
    PCGrad,
    ParetoMTL,
    SumCombiner,
    build_combiner,
)

__all__ = [
    "ARCHITECTURES",
    "CARE",
    "COMBINERS",
    "GradientCombiner",
    "Independent",
    "MGDA",
    "ModelPatch",
    "MultiTaskNetwork",
    "MultitaskBackwardStats",
    "PCGrad",
    "ParetoMTL",
    "SeparateBottom",
    "SharedBottom",
    "SoftModular",
    "SumCombiner",
    "apply_multitask_backward",
    "summed_backward",
    "build_combiner",
    "build_network",
    "mlp",
    "torch_distributed_allreduce",
]
