"""RLlib's own checks of an RL config, run on the driver before anything starts or is written.

Our pydantic config checks each field; RLlib refuses some *combinations* (batch size vs runners x
envs x fragment length, minibatch vs batch, ...) only in ``AlgorithmConfig.validate()``, which
``build_algo()`` calls after the run folder, the MLflow run and Ray exist. Calling it here first
(it needs no Ray) turns those refusals into config errors: exit 2, nothing written.
"""

from __future__ import annotations

import logging
import re

from orchestrator.config import ConfigError, ExperimentConfig, resolve_task_space

# RLlib's names in its messages -> our `rl.*` fields.
RLLIB_TO_CONFIG_FIELD = {
    "num_env_runners": "rl.num_env_runners",
    "num_envs_per_env_runner": "rl.num_envs_per_env_runner",
    "rollout_fragment_length": "rl.rollout_fragment_length",
    "train_batch_size_per_learner": "rl.train_batch_size",
    "total_train_batch_size": "rl.train_batch_size",
    "train_batch_size": "rl.train_batch_size",
    "minibatch_size": "rl.minibatch_size",
    "num_epochs": "rl.num_epochs",
    "num_learners": "rl.num_learners",
    "num_gpus_per_learner": "rl.num_gpus_per_learner",
    "num_cpus_per_env_runner": "rl.num_cpus_per_env_runner",
    "entropy_coeff": "rl.entropy_coeff",
    "clip_param": "rl.clip_param",
    "vf_loss_coeff": "rl.vf_loss_coeff",
    "lambda_": "rl.lambda",
    "gamma": "rl.gamma",
    "lr": "rl.lr",
}


# Where SAC's settings live (the `sac` section) instead.
SAC_RLLIB_TO_CONFIG_FIELD = {
    **RLLIB_TO_CONFIG_FIELD,
    "train_batch_size_per_learner": "sac.train_batch_size",
    "total_train_batch_size": "sac.train_batch_size",
    "train_batch_size": "sac.train_batch_size",
    "actor_lr": "sac.actor_lr",
    "critic_lr": "sac.critic_lr",
    "alpha_lr": "sac.alpha_lr",
    "initial_alpha": "sac.initial_alpha",
    "tau": "sac.tau",
    "num_steps_sampled_before_learning_starts": "sac.learning_starts",
    "training_intensity": "sac.training_intensity",
}


def rllib_fields_named(message: str, fields: dict[str, str] = RLLIB_TO_CONFIG_FIELD) -> list[str]:
    """Our config fields whose RLlib names occur in ``message``, in first-mention order, once each."""
    found: list[tuple[int, str]] = []
    for rllib_name, field in fields.items():
        match = re.search(rf"(?<![A-Za-z_]){re.escape(rllib_name)}(?![A-Za-z_])", message)
        if match:
            found.append((match.start(), field))
    ordered: list[str] = []
    for _, field in sorted(found):
        if field not in ordered:
            ordered.append(field)
    return ordered


def check_rllib_config(cfg: ExperimentConfig, source: str) -> None:
    """Build the RLlib config `mto train` would build and run RLlib's ``validate()`` on it.

    Raises `ConfigError` naming our fields (`rl.*`, `sac.*`, with their values) that RLlib refuses.
    """
    if cfg.is_supervised or cfg.offline is not None:
        return
    import ray.rllib  # noqa: F401 - configures its logger on import; quieten it after that

    from orchestrator.rl.algorithm import algorithm_config, env_config_for

    rllib_logger = logging.getLogger("ray.rllib")
    level = rllib_logger.level
    rllib_logger.setLevel(logging.ERROR)  # `mto check` prints a verdict, not RLlib's new-API-stack notices
    try:
        groups = cfg.groups or [list(resolve_task_space(cfg).names)]
        for tasks in groups:
            algorithm_config(cfg, env_config_for(cfg, list(tasks), None, None)).validate()
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        message = str(exc).split("\nTo suppress all validation errors", 1)[0].strip()
        fields = rllib_fields_named(message, SAC_RLLIB_TO_CONFIG_FIELD if cfg.rl.algorithm == "SAC" else RLLIB_TO_CONFIG_FIELD)
        settings = ", ".join(f"{f}={_value(cfg, f)}" for f in fields) or "see the message"
        raise ConfigError(f"{source}: RLlib refuses these settings ({settings}): {message}") from None
    finally:
        rllib_logger.setLevel(level)


def _value(cfg: ExperimentConfig, field: str):
    section, name = field.split(".", 1)
    return getattr(getattr(cfg, section), "lambda_" if name == "lambda" else name)


__all__ = ["RLLIB_TO_CONFIG_FIELD", "SAC_RLLIB_TO_CONFIG_FIELD", "check_rllib_config", "rllib_fields_named"]
