"""RLlib (new API stack) assembly: the Simon Says env inside every EnvRunner, PPO, learners.

The env creator below runs inside each EnvRunner actor. It builds the natively
vectorised Simon Says env and wraps it with the curriculum wrapper, which talks
to the named `CurriculumActor` without blocking. RLlib owns the rest: we do not
write PPO, the EnvRunner pool or the Learner group.
"""

from __future__ import annotations

import math
from typing import Any

from orchestrator.config import ExperimentConfig

ENV_NAME = "mto-simon-says"


def make_simon_says_env(env_config: dict[str, Any]):
    """RLlib env creator: a vector env when RLlib passes `num_envs`, else a single env.

    `env_config["curriculum_actor"]` names the `CurriculumActor`; when it is None the
    env samples tasks uniformly and adds no bonus (the baseline for overhead numbers).
    """
    import gymnasium as gym

    from tasks.simon_says import ENV_ID  # importing the package registers the gymnasium ids

    env_kwargs = dict(
        tasks=list(env_config["tasks"]),
        horizon=int(env_config["horizon"]),
        backend=env_config.get("backend", "techtree"),
    )
    if env_config.get("action_mask"):
        env_kwargs["action_mask"] = True
    num_envs = env_config.get("num_envs")
    actor_name = env_config.get("curriculum_actor")
    if env_config.get("count_milestones") and actor_name is not None:
        env_kwargs["count_milestones"] = True  # only the curriculum wrapper pays for them
    if num_envs is None:
        env = gym.make(ENV_ID, **env_kwargs)
        if actor_name is None:
            return env
        from orchestrator.rl.curriculum_wrapper import CurriculumWrapper

        return CurriculumWrapper(env, _client(env_config), **_wrapper_kwargs(env_config, env))

    env = gym.make_vec(ENV_ID, num_envs=int(num_envs), vectorization_mode="vector_entry_point", **env_kwargs)
    if actor_name is None:
        return env
    from orchestrator.rl.curriculum_wrapper import CurriculumVectorWrapper

    return CurriculumVectorWrapper(env, _client(env_config), **_wrapper_kwargs(env_config, env))


def _client(env_config: dict[str, Any]):
    import ray

    from orchestrator.rl.curriculum_actor import ActorCurriculumClient

    handle = ray.get_actor(env_config["curriculum_actor"], namespace=env_config.get("namespace"))
    return ActorCurriculumClient(handle)


def _wrapper_kwargs(env_config: dict[str, Any], env) -> dict[str, Any]:
    milestones = getattr(env.unwrapped, "milestones", None)
    scope = None
    if env_config.get("bonus_scope") == "goal_prerequisites":
        from tasks.simon_says import goal_prerequisite_items

        base = env.unwrapped
        scope = goal_prerequisite_items(base.task_space.names, base.item_names, env_config.get("backend", "techtree"))
    return dict(
        bonus_scope=scope,
        bonus_size=float(env_config["bonus_size"]),
        refresh_every_episodes=int(env_config["refresh_every_episodes"]),
        refresh_every_seconds=float(env_config["refresh_every_seconds"]),
        report_every_episodes=int(env_config["report_every_episodes"]),
        wait_for_curriculum=bool(env_config.get("reproducible", False)),
        milestone_serves=None if milestones is None else milestones.serves,
        max_bonus_per_episode=env_config.get("max_bonus_per_episode"),
    )


def env_config_for(cfg: ExperimentConfig, task_names: list[str], actor_name: str | None, namespace: str | None) -> dict[str, Any]:
    """The plain-data env config every EnvRunner receives."""
    return {
        "tasks": list(task_names),
        "family": cfg.task.family,
        "task_set": cfg.task.task_set,
        "benchmark_seed": cfg.seed,  # Meta-World's goal variations; `mto eval` draws the same ones
        "horizon": cfg.task.horizon,
        "backend": cfg.task.backend,
        "action_mask": cfg.task.action_mask,
        "curriculum_actor": actor_name,
        "namespace": namespace,
        "bonus_size": cfg.bonus.size if cfg.bonus.mode != "off" else 0.0,
        "bonus_scope": cfg.bonus.scope,
        "count_milestones": cfg.bonus.count_milestones and cfg.bonus.mode != "off",
        "max_bonus_per_episode": cfg.bonus.max_per_episode,
        "refresh_every_episodes": cfg.curriculum.refresh_every_episodes,
        "refresh_every_seconds": cfg.curriculum.refresh_every_seconds,
        "reproducible": cfg.curriculum.reproducible,
        "report_every_episodes": cfg.curriculum.report_every_episodes,
    }


def build_ppo_config(cfg: ExperimentConfig, env_config: dict[str, Any], affinity_every: int | None = None,
                     affinity_lr: float | None = None):
    """A `PPOConfig` on the new API stack from our typed config.

    ``affinity_every``/``affinity_lr``: the multi-task learner measures TAG task affinity
    every that many minibatch updates (needs a `policies` architecture, not ``mlp``).
    """
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_simon_says_env)
    rl = cfg.rl
    algo_class = None
    if rl.overlap_sampling:
        from orchestrator.rl.overlap import OverlappedPPO

        algo_class = OverlappedPPO
    ppo = (
        PPOConfig(algo_class=algo_class)
        .environment(env=ENV_NAME, env_config=env_config)
        .env_runners(
            num_env_runners=rl.num_env_runners,
            num_envs_per_env_runner=rl.num_envs_per_env_runner,
            num_cpus_per_env_runner=rl.num_cpus_per_env_runner,
            rollout_fragment_length=rl.rollout_fragment_length,
            gym_env_vectorize_mode="vector_entry_point",
        )
        .learners(num_learners=rl.num_learners, num_gpus_per_learner=rl.num_gpus_per_learner)
        .training(
            lr=rl.lr,
            gamma=rl.gamma,
            lambda_=rl.lambda_,
            train_batch_size_per_learner=rl.train_batch_size,
            minibatch_size=rl.minibatch_size,
            num_epochs=rl.num_epochs,
            entropy_coeff=rl.entropy_coeff,
            clip_param=rl.clip_param,
            vf_loss_coeff=rl.vf_loss_coeff,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=list(cfg.model.hidden), fcnet_activation=cfg.model.activation
            )
        )
        .debugging(seed=cfg.seed, log_level="ERROR", log_sys_usage=False)
        .reporting(metrics_num_episodes_for_smoothing=100)
    )
    if rl.overlap_sampling:
        # Two weight syncs may be in flight: the one queued behind a runner's sample request and the next.
        ppo = ppo.env_runners(max_requests_in_flight_per_env_runner=2).training(
            learner_config_dict={"max_policy_lag": rl.max_policy_lag})
    if rl.lean_connectors:
        from orchestrator.rl.connectors import LeanSingleAgentEnvRunner, lean_env_to_module, lean_module_to_env

        ppo = ppo.env_runners(
            env_runner_cls=LeanSingleAgentEnvRunner,
            env_to_module_connector=lean_env_to_module,
            module_to_env_connector=lean_module_to_env,
            add_default_connectors_to_env_to_module_pipeline=False,
            add_default_connectors_to_module_to_env_pipeline=False,
        )
        from orchestrator.rl.learner_connectors import EpisodesToTrainBatchWithGAE

        gamma, lambda_, decoupled = rl.gamma, rl.lambda_, rl.overlap_sampling
        ppo = ppo.training(
            learner_connector=lambda obs_space, act_space: EpisodesToTrainBatchWithGAE(
                obs_space, act_space, gamma=gamma, lambda_=lambda_, decoupled=decoupled),
            add_default_connectors_to_learner_pipeline=False,
        )
    if affinity_every and cfg.model.architecture == "mlp":
        raise ValueError("task affinity is measured on a multi-task architecture's shared parameters; "
                         "model.architecture 'mlp' has no task structure (use e.g. shared_bottom)")
    if cfg.task.action_mask and cfg.model.architecture == "mlp":
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from orchestrator.rl.action_masking import ActionMaskedPPOModule

        ppo = ppo.rl_module(rl_module_spec=RLModuleSpec(module_class=ActionMaskedPPOModule))
    if cfg.model.architecture != "mlp":
        from orchestrator.rl.multitask import MultiTaskPPOLearner, multitask_rl_module_spec

        num_tasks = len(env_config["tasks"])
        ppo = ppo.rl_module(
            rl_module_spec=multitask_rl_module_spec(
                cfg.model.architecture, cfg.model.hidden, num_tasks, architecture_params(cfg, env_config["tasks"])
            )
        ).training(
            learner_class=MultiTaskPPOLearner,
            learner_config_dict={
                "combiner": cfg.model.combiner,
                "combiner_params": dict(cfg.model.combiner_params),
                "num_tasks": num_tasks,
                "task_names": list(env_config["tasks"]),
                "affinity_every": affinity_every or 0,
                "affinity_lr": affinity_lr,
            },
        )
    return ppo


def architecture_params(cfg: ExperimentConfig, task_names) -> dict[str, Any]:
    """``model.architecture_params``, plus CARE's task metadata (a sentence per task, encoded once)."""
    params = dict(cfg.model.architecture_params)
    if cfg.model.architecture == "care" and "metadata" not in params:
        from orchestrator.rl.task_metadata import task_metadata

        params["metadata"] = task_metadata(cfg, list(task_names)).tolist()
    return params


def local_learner_threads(cfg: ExperimentConfig, cpus: int | None = None) -> int:
    """Torch threads for a learner that runs in the driver.

    The EnvRunners' CPUs are busy stepping environments; a learner that also spins
    threads on them thrashes (measured here: 18 ms vs 350 ms per minibatch on two
    shared cores), so by default it only takes the CPUs left over.
    """
    import os

    if cfg.rl.learner_threads is not None:
        return cfg.rl.learner_threads
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    busy = cfg.rl.num_env_runners * cfg.rl.num_cpus_per_env_runner
    return max(1, int(cpus - busy))


def build_algorithm(cfg: ExperimentConfig, env_config: dict[str, Any], cpus: int | None = None, **learner: Any):
    """Build the PPO `Algorithm` (and size the driver's torch thread pool for a local learner).

    ``cpus``: the CPUs this process may use (a Tune trial's share; default: the machine's).
    ``learner``: ``affinity_every``/``affinity_lr`` for `build_ppo_config`.
    """
    if cfg.rl.num_learners == 0:
        import torch

        torch.set_num_threads(local_learner_threads(cfg, cpus))
    return algorithm_config(cfg, env_config, **learner).build_algo()


def algorithm_config(cfg: ExperimentConfig, env_config: dict[str, Any], **learner: Any):
    """The RLlib `AlgorithmConfig` (PPO or SAC, by ``rl.algorithm``) that `build_algorithm` builds."""
    if cfg.rl.algorithm == "SAC":
        if learner.get("affinity_every"):
            raise ValueError("task affinity is measured inside the PPO learner; rl.algorithm SAC does not offer it")
        from orchestrator.rl.sac import build_sac_config

        return build_sac_config(cfg, env_config, architecture_params(cfg, env_config["tasks"]))
    return build_ppo_config(cfg, env_config, **learner)


def _flush_env(runner) -> bool:
    from orchestrator.rl.curriculum_wrapper import CurriculumVectorWrapper, CurriculumWrapper

    env = getattr(runner, "env", None)
    while env is not None:
        if isinstance(env, (CurriculumVectorWrapper, CurriculumWrapper)):
            env.flush()
            return True
        env = getattr(env, "env", None)
    return False


def flush_curriculum_reports(algo) -> int:
    """Make every EnvRunner send its queued episode outcomes and wait until the actor has them.

    Called before a checkpoint, so the curriculum state saved beside the policy holds
    every episode sampled so far. Returns how many EnvRunners had a curriculum wrapper.
    """
    return sum(algo.env_runner_group.foreach_env_runner(_flush_env, local_env_runner=True))


def iteration_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers from one `algo.train()` result that we track, under stable names."""
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        EPISODE_RETURN_MEAN,
        LEARNER_RESULTS,
        NUM_ENV_STEPS_SAMPLED,
    )

    out: dict[str, float] = {}
    runners = result.get(ENV_RUNNER_RESULTS, {})
    steps = float(runners.get(NUM_ENV_STEPS_SAMPLED, 0.0))
    # NaN when every EnvRunner failed this iteration (RLlib restarts them): nothing sampled.
    out["env_steps"] = steps if math.isfinite(steps) else 0.0
    if EPISODE_RETURN_MEAN in runners:
        out["episode_return_mean"] = float(runners[EPISODE_RETURN_MEAN])
    if "episode_len_mean" in runners:
        out["episode_length_mean"] = float(runners["episode_len_mean"])
    learner = result.get(LEARNER_RESULTS, {}).get("default_policy", {})
    for key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "total_loss",
                "qf_loss", "qf_twin_loss", "alpha_loss", "alpha_value"):  # the last four: SAC
        if key in learner:
            out[f"loss/{key}"] = float(learner[key])
    from orchestrator.rl.overlap import POLICY_LAG, STALE_STEPS_DROPPED

    for key in (POLICY_LAG, STALE_STEPS_DROPPED):  # rl.overlap_sampling
        if key in result:
            out[key] = float(result[key])
    for key, value in learner.items():  # per task, only in iterations where a task was dropped
        if key.startswith(("combiner/dropped_nonfinite/", "alpha/")):  # alpha/<task>: SAC's per-task temperatures
            out[key] = float(value)
    return out


def on_every_learner(algo, func) -> list[Any]:
    """``func(learner)`` on every Learner (the local one, or each remote one), results in rank order."""
    return [result.get() for result in algo.learner_group.foreach_learner(func)]


def learner_affinity(algo) -> dict[str, Any] | None:
    """The running task affinity the multi-task learner measured (``MultiTaskPPOLearner.affinity_state``).

    With several learners every copy holds the same numbers (the lookahead's losses are
    all-reduced), so the first one is returned.
    """
    states = on_every_learner(algo, _affinity_state)
    return states[0] if states else None


def _affinity_state(learner) -> dict[str, Any] | None:
    state = getattr(learner, "affinity_state", None)
    return state() if state is not None else None
