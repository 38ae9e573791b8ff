"""The `tune:` config section: Ray Tune searches over task groupings (TAG) and Pareto preferences."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TuneConfig(BaseModel):
    """Ray Tune searches: `mto tune-groups` (task affinity grouping) and `mto pareto` (preference sweep)."""

    # Unknown keys are typos far more often than intentional: refuse them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

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
        None, ge=1, description="tune-groups on simon_says: PPO iterations each trial trains every group's network; null = training.iterations"
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
