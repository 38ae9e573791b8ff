"""What a resume may change: budget, logging, step sizes, resources; never what the checkpoint is.

`mto train --resume RUN --set ...` applies its overrides to the run's saved config. A change to
the network, the task list, the action mask, the algorithm or the curriculum would meet a
checkpoint built for other settings (a torch `size mismatch` after Ray, the MLflow run and the
curriculum file were already touched), so it is refused here, before anything starts.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config import ConfigError, ExperimentConfig, flatten

# Config paths (a key, or a section ending in ".") that a resume may set to new values.
RESUMABLE = (
    "training.",
    "tune.",  # read by `mto tune`, never by a resumed training run
    "rl.lr", "rl.gamma", "rl.lambda", "rl.entropy_coeff", "rl.clip_param", "rl.vf_loss_coeff",
    "rl.num_epochs", "rl.minibatch_size", "rl.train_batch_size", "rl.rollout_fragment_length",
    "rl.num_env_runners", "rl.num_envs_per_env_runner", "rl.num_cpus_per_env_runner", "rl.num_learners",
    "rl.num_gpus_per_learner", "rl.learner_threads",  # not lean_connectors: the checkpoint holds connector state
    "sac.actor_lr", "sac.critic_lr", "sac.alpha_lr", "sac.tau", "sac.train_batch_size", "sac.learning_starts",
    "sac.training_intensity", "sac.env_steps_per_iteration",
    "curriculum.refresh_every_episodes", "curriculum.refresh_every_seconds", "curriculum.report_every_episodes",
    "curriculum.checkpoint_every_seconds", "curriculum.evaluation_episodes_per_task",
    "supervised.epochs", "supervised.lr", "supervised.batch_size", "supervised.num_workers", "supervised.use_gpu",
    "offline.gradient_steps", "offline.lr", "offline.eval_every", "offline.eval_episodes_per_task",
    "offline.log_every", "offline.device", "offline.torch_threads", "offline.checkpoint_every",
)

_UNSET = object()


def resumable(key: str) -> bool:
    """Whether a resume may change the flattened config path ``key``."""
    return any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUMABLE)


def _show(value: Any) -> str:
    return "(not set)" if value is _UNSET else repr(value)


def changed_settings(saved: ExperimentConfig, given: ExperimentConfig) -> list[tuple[str, Any, Any]]:
    """``(path, saved value, given value)`` for every setting that differs and a resume may not change."""
    before, after = flatten(saved.to_dict()), flatten(given.to_dict())
    changed = []
    for key in sorted(set(before) | set(after), key=lambda k: (k.split(".")[0], k)):
        old, new = before.get(key, _UNSET), after.get(key, _UNSET)
        if {} in (old, new) and _UNSET in (old, new):
            continue  # `flatten` keeps an empty mapping as one key; the other side lists its entries
        if old != new and not resumable(key):
            changed.append((key, old, new))
    return changed


def check_resume_settings(saved: ExperimentConfig, given: ExperimentConfig, what: str) -> None:
    """Raise `ConfigError` naming each setting ``given`` changes that the checkpoint fixes, with both values."""
    changed = changed_settings(saved, given)
    if not changed:
        return
    lines = [f"{key}: the run was trained with {_show(old)}, this resume gives {_show(new)}" for key, old, new in changed]
    raise ConfigError(
        f"{what}: a resume continues the checkpoint as it was trained and cannot change:\n  " + "\n  ".join(lines)
        + "\n  A resume may change the budget and logging (training.*), step sizes, batch sizes and resources "
        "(rl.lr, rl.train_batch_size, rl.num_env_runners, ...); train a new run for other settings "
        "(README: Checkpoints and resume). The run is unchanged."
    )
