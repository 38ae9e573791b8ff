"""The `sac:` config section (RLlib's SAC, `rl.algorithm: SAC`) and what SAC refuses.

SAC here is RLlib's continuous-action SAC on the Meta-World family; the Simon Says family
(discrete actions) trains with PPO. The checks return a reason (or None); `orchestrator.config`
turns it into a ConfigError naming the file and the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SACConfig(BaseModel):
    """RLlib SAC (new API stack) with per-task entropy temperatures (used when `rl.algorithm` is SAC)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    train_batch_size: int = Field(256, ge=1, description="transitions replayed per gradient update (per learner)")
    actor_lr: float = Field(3e-4, gt=0, description="actor Adam learning rate")
    critic_lr: float = Field(3e-4, gt=0, description="twin Q Adam learning rate")
    alpha_lr: float = Field(3e-4, gt=0, description="entropy temperature Adam learning rate")
    initial_alpha: float = Field(1.0, gt=0, description="initial entropy temperature (every task's)")
    target_entropy: float | Literal["auto"] = Field("auto", description="auto: -action_dim, per task")
    per_task_alpha: bool = Field(
        True, description="one learnable entropy temperature per task (as the MT-SAC baselines); false: one for all"
    )
    tau: float = Field(5e-3, gt=0, le=1, description="target Q network soft-update rate")
    replay_capacity: int = Field(1_000_000, ge=1, description="replay buffer size in transitions (uniform replay)")
    learning_starts: int = Field(1500, ge=0, description="env steps sampled before the first gradient update")
    training_intensity: float | None = Field(
        None, gt=0, description="replayed / sampled transitions: each sampled env step earns training_intensity / "
        "train_batch_size updates (MT10's one update per round of the 10 envs at batch 1,280: 128); null: one update "
        "per sample round"
    )
    env_steps_per_iteration: int = Field(1000, ge=1, description="env steps sampled (at least) per training iteration")


def sac_setting_error(cfg: Any) -> tuple[str, str] | None:
    """``(field, reason)`` when the config asks SAC / Meta-World for something they cannot do, else None."""
    sac = cfg.rl.algorithm == "SAC"
    metaworld = cfg.task.family == "metaworld"
    if sac and not metaworld:
        return ("rl.algorithm", f"SAC is RLlib's continuous-action SAC, offered on the metaworld family; "
                f"'{cfg.task.family}' has discrete actions: use PPO")
    if metaworld:
        from tasks.metaworld import MissingExtraError, require_metaworld

        try:
            require_metaworld()
        except MissingExtraError as exc:
            return ("task.family", str(exc))
    if metaworld and not sac:
        return ("rl.algorithm", "the metaworld family has continuous actions (4 numbers) and the PPO modules here "
                "are discrete-action (categorical) ones: use SAC")
    if cfg.model.combiner == "pareto_mtl":
        return ("model.combiner", "pareto_mtl places a solution by the direction of the vector of (positive) task "
                "losses, and SAC's per-task actor losses (alpha * log pi - Q) are negative and change sign, so it is "
                "offered for the supervised families only; valid choices with SAC: sum, pcgrad, mgda")
    if cfg.task.action_mask:
        return ("task.action_mask", "the action mask is a discrete-action option (which of the Simon Says actions "
                "are valid); SAC on metaworld acts with continuous actions, there is nothing to mask")
    if cfg.bonus.mode != "off":
        return ("bonus.mode", "the exploration bonus pays for newly obtained items and Meta-World tasks have no "
                "items; set bonus.mode: off")
    if cfg.task.horizon > 500:
        return ("task.horizon", f"Meta-World episodes end at 500 steps (max_path_length); got {cfg.task.horizon}")
    if cfg.task.max_depth is not None:
        return ("task.max_depth", "Meta-World tasks have no prerequisite depth; list them in task.tasks instead")
    return None


__all__ = ["SACConfig", "sac_setting_error"]
