"""The `tune:` config section: Ray Tune searches over task groupings (TAG), Pareto preferences and
hyperparameters (`tune.search_space`, whose sampler specs are checked here; which config keys they
may name is checked by `orchestrator.tune.hyperparameters`, which knows the whole config)."""

from __future__ import annotations

import difflib
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Sampler name -> what its arguments are. Each maps onto the Ray Tune sampler of the same name
# (``grid`` onto ``tune.grid_search``); bounds follow Ray Tune: ``randint``/``lograndint`` exclude
# ``high``, the ``q`` samplers round to a multiple of ``q`` (which makes ``high`` reachable).
SAMPLERS: dict[str, str] = {
    "grid": "[v1, v2, ...]: every value is tried (with every value of the other grid keys)",
    "choice": "[v1, v2, ...]: one value drawn per trial",
    "uniform": "[low, high]: a float drawn uniformly",
    "quniform": "[low, high, q]: uniform, rounded to a multiple of q",
    "loguniform": "[low, high]: a float drawn uniformly in log space (0 < low)",
    "qloguniform": "[low, high, q]: loguniform, rounded to a multiple of q",
    "randint": "[low, high]: an integer in low..high-1",
    "lograndint": "[low, high]: an integer in low..high-1, uniform in log space (0 < low)",
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def sampler_problem(spec: Any) -> str | None:
    """What is wrong with one search-space spec (``{sampler: arguments}``), or None."""
    valid = f"valid samplers: {', '.join(SAMPLERS)}"
    if not isinstance(spec, dict) or len(spec) != 1:
        return f"give one sampler as {{sampler: arguments}}, e.g. {{loguniform: [0.0001, 0.01]}}, not {spec!r}; {valid}"
    (name, args), = spec.items()
    if name not in SAMPLERS:
        close = difflib.get_close_matches(str(name), list(SAMPLERS), n=1)
        hint = f" did you mean '{close[0]}'?" if close else ""
        return f"unknown sampler '{name}';{hint} {valid}"
    usage = f"{name} takes {SAMPLERS[name]}"
    if name in ("grid", "choice"):
        return None if isinstance(args, list) and args else f"{usage}; got {args!r}"
    arity = 3 if name.startswith("q") else 2
    if not isinstance(args, list) or len(args) != arity or not all(_number(a) for a in args):
        return f"{usage}; got {args!r}"
    low, high = args[0], args[1]
    if name in ("randint", "lograndint") and not all(isinstance(a, int) for a in args):
        return f"{usage}: integers; got {args!r}"
    if not low < high:
        return f"{usage}: low < high; got {args!r}"
    if "log" in name and low <= 0:
        return f"{usage}: low > 0; got {args!r}"
    if arity == 3 and args[2] <= 0:
        return f"{usage}: q > 0; got {args!r}"
    return None


def sampler_extremes(spec: dict[str, Any]) -> list[Any]:
    """The values a valid spec can produce that bound what a trial may see: every listed value of
    ``grid``/``choice``, the lowest and highest value of the others."""
    (name, args), = spec.items()
    if name in ("grid", "choice"):
        return list(args)
    low, high = args[0], args[1]
    if name in ("randint", "lograndint"):
        return [low, high - 1]
    if name.startswith("q"):
        q = args[2]
        # Ray Tune rounds a draw to the nearest multiple of q (np.round(value / q) * q).
        return [float(round(low / q) * q), float(round(high / q) * q)]
    return [float(low), float(high)]


class TuneConfig(BaseModel):
    """Ray Tune searches: `mto tune-groups` (task affinity grouping), `mto pareto` (preference sweep) and `mto tune` (hyperparameters)."""

    # Unknown keys are typos far more often than intentional: refuse them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    storage_path: str | None = Field(
        None, description="Tune results and checkpoints (local dir, shared path or s3://...); null = <run_dir>/tune"
    )
    max_groups: int = Field(3, ge=1, description="tune-groups: at most this many groups (networks)")
    top_k: int = Field(3, ge=1, description="tune-groups: candidate groupings trained as Tune trials (best affinity first)")
    affinity_every: int = Field(8, ge=1, description="tune-groups: measure the lookahead affinity every this many training steps / PPO minibatch updates (each measurement costs about one step)")
    affinity_lr: float = Field(1e-3, gt=0, description="tune-groups: SGD step size of the lookahead (small: linear regime)")
    affinity_epochs: int | None = Field(
        None, ge=1, description="tune-groups: epochs of the co-training run that measures affinity; null = supervised.epochs"
    )
    budget_epochs: int | None = Field(
        None, ge=1, description="epochs each trial trains every network; null = supervised.epochs"
    )
    affinity_iterations: int | None = Field(
        None, ge=1, description="tune-groups on simon_says: PPO iterations of the co-training run that measures affinity; null = training.iterations"
    )
    budget_iterations: int | None = Field(
        None, ge=1, description="simon_says: PPO iterations of each trial (tune-groups: of every group's network; tune: of each sampled config); null = training.iterations"
    )
    beam_width: int = Field(64, ge=1, description="tune-groups: beam width of the grouping search beyond 12 tasks")
    trial_cpus: float = Field(1.0, gt=0, description="CPUs reserved per Tune trial")
    trial_gpus: float = Field(0.0, ge=0, description="GPUs reserved per Tune trial (trains on the GPU when > 0)")
    max_concurrent_trials: int | None = Field(None, ge=1, description="trials running at once; null = as resources allow")
    num_preferences: int = Field(
        5, ge=1,
        description="pareto: preference vectors (2 tasks: evenly spread on the quarter circle; more: the smallest simplex lattice with at least this many points)",
    )
    pareto_steps: int = Field(300, ge=1, description="pareto on pareto_toy: gradient steps on the decision variable")
    pareto_lr: float = Field(0.5, gt=0, description="pareto on pareto_toy: SGD step size")
    max_init_steps: int = Field(40, ge=0, description="pareto: Pareto MTL's feasible-start phase length (steps)")
    search_space: dict[str, Any] = Field(
        default_factory=dict,
        description="tune: config path -> sampler, e.g. `rl.lr: {loguniform: [0.0001, 0.01]}`; samplers: "
                    + ", ".join(SAMPLERS) + " (README: Hyperparameter search)",
    )
    num_samples: int = Field(
        1, ge=1, description="tune: trials drawn from the search space (with grid keys: draws per grid point)"
    )
    objective: Literal["mean_success", "items_mastered"] = Field(
        "mean_success",
        description="tune: what ranks trials, on training.eval_episodes_per_task fresh episodes per task at the end of each trial: mean success, or tasks with success >= training.mastery_threshold (ties: mean success)",
    )
    budget_env_steps: int | None = Field(
        None, ge=1, description="tune: a trial also stops after this many env steps; null = training.max_env_steps"
    )
    scheduler: Literal["fifo", "asha"] = Field(
        "fifo", description="tune: fifo runs every trial to its budget; asha stops the worse trials early, on the curriculum's running success estimate"
    )
    grace_period: int = Field(1, ge=1, description="tune with asha: iterations every trial runs before it may be stopped")

    @field_validator("search_space")
    @classmethod
    def _samplers_are_known(cls, space: dict[str, Any]) -> dict[str, Any]:
        for key, spec in space.items():
            problem = sampler_problem(spec)
            if problem:
                raise ValueError(f"{key}: {problem}")
        return space
