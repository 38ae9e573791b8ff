"""Ray Tune trials of `mto tune-groups` for Simon Says (RLlib PPO on the new API stack).

Each trial builds its own PPO `Algorithm` inside the trial's placement group
(`trial_resources`: the trial process, then one bundle per EnvRunner and per
Learner actor, as RLlib's own `default_resource_request` lays them out). Tasks
are sampled uniformly (no CurriculumActor): the affinity of task i to task j
should not depend on how often a curriculum happened to pick them.

- `rl_affinity_trial`: co-train every task in one multi-task network; the learner
  measures TAG lookahead affinity on its per-task PPO losses
  (`MultiTaskPPOLearner`), reported as ``affinity/<source>/<task>`` every iteration;
  the last report adds the per-task success on fresh episodes.
- `rl_grouping_trial`: one PPO run per group of a candidate grouping, each to the
  same budget; a task counts with the group whose network gives it the highest
  success, and the trial's score is ``mean_success`` over all tasks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from orchestrator.config import ExperimentConfig, config_for_tasks


def trial_resources(cfg: ExperimentConfig):
    """The placement group of one RL trial: the trial process (``tune.trial_cpus``/``trial_gpus``,
    which hosts a local learner and, with ``rl.num_env_runners: 0``, the sampling), plus
    one bundle per EnvRunner and per remote Learner."""
    from ray.tune import PlacementGroupFactory

    bundles: list[dict[str, float]] = [{"CPU": cfg.tune.trial_cpus, "GPU": cfg.tune.trial_gpus}]
    bundles += [{"CPU": cfg.rl.num_cpus_per_env_runner}] * cfg.rl.num_env_runners
    # RLlib's "auto" learner CPUs: one per CPU learner, none beside a GPU.
    learner = {"CPU": 0.0, "GPU": cfg.rl.num_gpus_per_learner} if cfg.rl.num_gpus_per_learner else {"CPU": 1.0}
    bundles += [learner] * cfg.rl.num_learners
    return PlacementGroupFactory(bundles, strategy="PACK")


def trial_config(params: dict[str, Any], tasks: list[str]) -> ExperimentConfig:
    """The search's config, restricted to ``tasks`` (one network over exactly these tasks)."""
    return config_for_tasks(params["config"], tasks, "tune trial")


def train_and_evaluate(cfg: ExperimentConfig, params: dict[str, Any], iterations: int, report, **learner: Any):
    """Train ``iterations`` PPO iterations (``report(iteration, metrics, algo)`` after each), then
    measure every task's success on fresh episodes; returns {task: success_rate}."""
    from orchestrator.rl.evaluate import evaluate_policy
    from orchestrator.rl.algorithm import build_algorithm, env_config_for, iteration_metrics

    names = list(cfg.task.tasks or [])
    algo = build_algorithm(cfg, env_config_for(cfg, names, None, None), cpus=max(1, int(params["trial_cpus"])), **learner)
    try:
        for iteration in range(1, iterations + 1):
            started = time.perf_counter()
            metrics = iteration_metrics(algo.train())
            metrics["iteration_seconds"] = time.perf_counter() - started
            report(iteration, metrics, algo)
        return evaluate_policy(algo.get_module(), cfg, cfg.training.eval_episodes_per_task, greedy=False, seed=cfg.seed)
    finally:
        algo.stop()


def _success_metrics(success: dict[str, float]) -> dict[str, float]:
    return {**{f"success/{t}": s for t, s in success.items()}, "mean_success": float(np.mean(list(success.values())))}


def rl_affinity_trial(config: dict[str, Any], params: dict[str, Any]) -> None:
    """Co-train all tasks in one network, measuring affinity; report every iteration."""
    from ray import tune

    from orchestrator.rl.algorithm import learner_affinity

    names = list(params["tasks"])
    cfg = trial_config(params, names)
    iterations = int(params["iterations"])
    started = time.perf_counter()
    pending: dict[str, float] = {}

    def report(iteration: int, metrics: dict[str, float], algo) -> None:
        state = learner_affinity(algo) or {}
        matrix = np.asarray(state.get("matrix", np.full((len(names), len(names)), np.nan)), dtype=float)
        row = {"iteration": iteration, "wall_time_s": time.perf_counter() - started,
               "affinity_time_s": float(state.get("seconds", 0.0)), **metrics}
        row.update({f"affinity/{a}/{b}": float(matrix[i, j]) for i, a in enumerate(names) for j, b in enumerate(names)
                    if i != j and np.isfinite(matrix[i, j])})
        if iteration < iterations:
            tune.report(row)
        else:  # the last report waits for the evaluation, so it carries the success table too
            pending.update(row)

    success = train_and_evaluate(cfg, params, iterations, report,
                                  affinity_every=int(params["affinity_every"]), affinity_lr=float(params["affinity_lr"]))
    tune.report({**pending, **_success_metrics(success), "wall_time_s": time.perf_counter() - started})


def rl_grouping_trial(config: dict[str, Any], params: dict[str, Any]) -> None:
    """Train one network per group of candidate ``config["candidate"]``; the last report has
    ``mean_success`` (each task scored by its best group) and ``success/<task>``."""
    from ray import tune

    from orchestrator.rl.evaluate import best_success_per_task

    groups: list[list[str]] = params["candidates"][config["candidate"]]
    per_group: list[dict[str, float]] = []
    started = time.perf_counter()
    for g, group in enumerate(groups):

        def report(iteration: int, metrics: dict[str, float], algo, g: int = g) -> None:
            tune.report({"group": g, "iteration": iteration,
                         **{f"group_{g}/{k}": v for k, v in metrics.items() if k in ("episode_return_mean", "env_steps")}})

        per_group.append(train_and_evaluate(trial_config(params, group), params, int(params["iterations"]), report))
    best = best_success_per_task(per_group)
    ordered = {t: best[t] for t in sorted(best)}
    tune.report({"group": len(groups), **_success_metrics(ordered), "wall_time_s": time.perf_counter() - started})
