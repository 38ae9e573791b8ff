"""The ``offline`` config section: collect a Parquet transition dataset, then train CQL on it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class BehaviourSource(_Section):
    """One behaviour policy that `mto collect` runs, on some tasks, for some transitions."""

    policy: Literal["random", "scripted", "checkpoint"] = Field(
        "random", description="random: uniform actions; scripted: the tech-tree player; checkpoint: a CQL q_network.pt")
    skill: float = Field(1.0, ge=0.0, le=1.0, description="probability of the policy's action instead of a uniform random one (scripted, checkpoint)")
    checkpoint: str | None = Field(None, description="checkpoint policy: path of a q_network.pt saved by an offline run")
    tasks: list[str] | None = Field(None, description="goals this source plays (each episode draws one uniformly); null = every task of task.tasks")
    transitions: int = Field(10_000, ge=1, description="transitions this source writes (split across its collectors)")

    @model_validator(mode="after")
    def _checkpoint_needs_path(self) -> "BehaviourSource":
        if (self.policy == "checkpoint") != (self.checkpoint is not None):
            raise ValueError("give `checkpoint` exactly when policy is 'checkpoint'")
        return self

    @property
    def name(self) -> str:
        """The behaviour policy id written into every row."""
        if self.policy == "random":
            return "random"
        if self.policy == "scripted":
            return f"scripted:{self.skill:g}"
        return f"checkpoint:{self.checkpoint}:{self.skill:g}"


class OfflineConfig(_Section):
    """Offline multi-task RL: collection to Parquet, conservative Q-learning, data sharing."""

    dataset: str = Field(..., min_length=1, description="transition dataset folder: `mto collect` writes it, `mto train` reads it")
    behaviour: list[BehaviourSource] = Field(
        default_factory=lambda: [BehaviourSource()], min_length=1, description="what `mto collect` runs")
    collectors_per_source: int = Field(1, ge=1, description="Ray tasks per behaviour source, each writing its own part files")
    envs_per_collector: int = Field(32, ge=1, description="Simon Says games stepped together in one collector")
    row_group_size: int = Field(4096, ge=1, description="rows per Parquet row group (what a writer holds per task before writing)")
    sharing: Literal["none", "all", "cds", "cds_basic"] = Field(
        "cds", description="none: own data only; all: every transition relabeled for every task; cds: conservative data "
                           "sharing (Q >= a percentile of Q on the task's own data); cds_basic: the paper's basic rule "
                           "(Q >= the mean greedy value on the task's own states)")
    percentile: float = Field(
        50.0, ge=0.0, le=100.0, description="cds: a relabeled transition joins task i if its Q >= this percentile of Q on task i's own data")
    threshold_window: int = Field(
        2048, ge=1, description="cds / cds_basic: the threshold is taken over each task's most recent this-many own "
                                "transitions (a running estimate over many batches, not one batch)")
    cds_warmup_steps: int = Field(
        200, ge=0, description="cds / cds_basic: gradient steps at the start that share every candidate (the rule's Q "
                               "has seen none of them yet); the thresholds are tracked from the first step")
    value_range: list[float] | None = Field(
        default_factory=lambda: [0.0, 1.0], min_length=2, max_length=2,
        description="TD targets clipped to [low, high], the returns a task can have (Simon Says: [0, 1]); null = no clip")
    gradient_steps: int = Field(2000, ge=1, description="CQL updates (each on one batch holding every task)")
    batch_size_per_task: int = Field(64, ge=1, description="own transitions per task in each batch")
    shared_per_task: int = Field(64, ge=0, description="relabeled candidates from other tasks offered to each task per batch (all / cds)")
    alpha: float = Field(1.0, ge=0.0, description="weight of the CQL(H) regulariser")
    gamma: float = Field(0.95, gt=0.0, le=1.0, description="discount")
    lr: float = Field(3e-4, gt=0.0, description="Adam learning rate")
    tau: float = Field(0.005, gt=0.0, le=1.0, description="Polyak step of the target network per update")
    hidden: list[int] = Field(default_factory=lambda: [256, 256], min_length=1, description="Q-network hidden layer sizes")
    eval_every: int = Field(1000, ge=1, description="gradient steps between online evaluations (and one at the end)")
    eval_episodes_per_task: int = Field(10, ge=1, description="fresh greedy episodes per task at each evaluation")
    log_every: int = Field(100, ge=1, description="gradient steps between metric logs")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the Q-network trains; auto: cuda when available")
    torch_threads: int | None = Field(None, ge=1, description="torch CPU threads for training; null = torch's default")
    checkpoint_every: int = Field(1000, ge=1, description="gradient steps between checkpoints (what `mto train --resume` continues from; one at the end)")

    @field_validator("hidden")
    @classmethod
    def _hidden_positive(cls, sizes: list[int]) -> list[int]:
        if any(size < 1 for size in sizes):  # a 0-wide layer builds a Q-network that computes nothing
            raise ValueError(f"layer sizes must be >= 1, got {sizes}")
        return sizes

    @field_validator("value_range")
    @classmethod
    def _value_range_ordered(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"value_range must be [low, high] with low < high, got {value}")
        return value


__all__ = ["BehaviourSource", "OfflineConfig"]
