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
- `rl_hyperparameter_trial` (`mto tune`): one PPO run of the search's config with the
  trial's sampled values put in, trained the way `mto train` would (with the config's
  curriculum in a CurriculumActor of its own), then scored on fresh episodes per task.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from typing import Any

import numpy as np

from orchestrator.config import ExperimentConfig, config_for_tasks, config_from_dict, resolve_task_space


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


def train_and_evaluate(cfg: ExperimentConfig, params: dict[str, Any], iterations: int, report,
                       curriculum: bool = False, max_env_steps: int | None = None, **learner: Any):
    """Train ``iterations`` PPO iterations (``report(iteration, metrics, algo)`` after each; or fewer
    once ``max_env_steps`` env steps are sampled), then measure every task's success on fresh
    episodes; returns {task: success_rate}.

    Tasks are sampled uniformly unless ``curriculum``: then the config's curriculum runs in a
    CurriculumActor of this trial's own (with its exploration bonus, as in `mto train`), and
    ``metrics`` carry its running estimates as ``online/success_rate/<task>``.
    """
    from orchestrator.rl.evaluate import evaluate_policy
    from orchestrator.rl.algorithm import build_algorithm, env_config_for, iteration_metrics

    names = list(cfg.task.tasks or resolve_task_space(cfg).names)
    with _trial_curriculum(cfg, names, curriculum) as (actor, actor_name, namespace):
        algo = build_algorithm(cfg, env_config_for(cfg, names, actor_name, namespace),
                               cpus=max(1, int(params["trial_cpus"])), **learner)
        try:
            env_steps = 0
            for iteration in range(1, iterations + 1):
                started = time.perf_counter()
                if actor is not None:
                    _evaluate_for_curriculum(cfg, algo, actor, iteration)
                metrics = iteration_metrics(algo.train())
                metrics["iteration_seconds"] = time.perf_counter() - started
                env_steps += int(metrics["env_steps"])
                metrics["env_steps_total"] = float(env_steps)
                if actor is not None:
                    metrics.update(_online_success(actor, names))
                report(iteration, metrics, algo)
                if max_env_steps is not None and env_steps >= max_env_steps:
                    break
            return evaluate_policy(algo.get_module(), cfg, cfg.training.eval_episodes_per_task, greedy=False,
                                   seed=cfg.seed)
        finally:
            algo.stop()


@contextmanager
def _trial_curriculum(cfg: ExperimentConfig, names: list[str], wanted: bool):
    """(actor, its name, namespace) of a CurriculumActor for this trial only, or Nones; killed afterwards."""
    if not wanted:
        yield None, None, None
        return
    import ray

    from orchestrator.config import build_scheduler, resolve_item_names
    from orchestrator.rl.curriculum_actor import start_curriculum_actor
    from orchestrator.rl.training import ACTOR_NAMESPACE

    name = f"curriculum-tune-{uuid.uuid4().hex[:12]}"
    actor = start_curriculum_actor(build_scheduler(cfg, names, resolve_item_names(cfg)), name=name,
                                   namespace=ACTOR_NAMESPACE, max_restarts=0,
                                   checkpoint_every_seconds=cfg.curriculum.checkpoint_every_seconds)
    try:
        yield actor, name, ACTOR_NAMESPACE
    finally:
        ray.kill(actor, no_restart=True)


def _evaluate_for_curriculum(cfg: ExperimentConfig, algo, actor, iteration: int) -> None:
    """A curriculum with ``params.success_source: evaluation`` measures success on fresh episodes
    when it asks for them (as `mto train` does)."""
    import ray

    from orchestrator.rl.evaluate import evaluation_episodes

    if cfg.curriculum.params.get("success_source", "online") != "evaluation" or not ray.get(actor.evaluation_due.remote()):
        return
    outcomes = evaluation_episodes(algo.get_module(), cfg, cfg.curriculum.evaluation_episodes_per_task, greedy=False,
                                   seed=cfg.seed + iteration)
    ray.get(actor.report.remote(outcomes, f"evaluation-{iteration}", 1))  # a retry is not counted twice


def _online_success(actor, names: list[str]) -> dict[str, float]:
    import ray

    metrics = ray.get(actor.metrics.remote())
    return {f"online/success_rate/{t}": float(metrics.get(f"success_rate/{t}", 0.0)) for t in names}


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


def sampled_config(data: dict[str, Any], values: dict[str, Any], source: str) -> ExperimentConfig:
    """The search's config (plain data) with each sampled ``values[path]`` put at its dotted config
    path (paths as `orchestrator.tune.hyperparameters.search_space_keys` spells them), validated."""
    import copy

    data = copy.deepcopy(data)
    for path, value in values.items():
        node = data
        *parents, last = path.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[last] = value
    return config_from_dict(data, source)


def objective_values(success: dict[str, float], threshold: float) -> dict[str, float]:
    """Mean success and the number of tasks mastered (success >= ``threshold``)."""
    rates = list(success.values())
    return {"mean_success": float(np.mean(rates)) if rates else 0.0,
            "items_mastered": float(sum(r >= threshold for r in rates))}


def rl_hyperparameter_trial(config: dict[str, Any], params: dict[str, Any]) -> None:
    """`mto tune`: train the search's config with the sampled values ``config`` ({config path: value}).

    Every iteration reports ``objective`` from the curriculum's running success estimate (what
    ASHA compares); the last report replaces it by the objective on fresh episodes per task
    (``evaluated: 1``) and adds ``mean_success``, ``items_mastered`` and ``success/<task>``.
    A sampled config that does not validate fails the trial with the config's own message."""
    from ray import tune

    cfg = sampled_config(params["config"], config, f"tune trial {config}")
    names = list(resolve_task_space(cfg).names)
    cfg = config_for_tasks(cfg.to_dict(), names, f"tune trial {config}")
    objective, threshold = params["objective"], cfg.training.mastery_threshold
    iterations = int(params["iterations"])
    max_env_steps = params["max_env_steps"]
    started = time.perf_counter()
    pending: dict[str, float] = {}

    def report(iteration: int, metrics: dict[str, float], algo) -> None:
        online = objective_values({t: metrics.get(f"online/success_rate/{t}", 0.0) for t in names}, threshold)
        row = {"iteration": iteration, "wall_time_s": time.perf_counter() - started, "evaluated": 0.0,
               **{k: v for k, v in metrics.items() if k in ("env_steps_total", "episode_return_mean")},
               **{f"online/{k}": v for k, v in online.items()}, "objective": online[objective]}
        last = iteration >= iterations or (max_env_steps is not None and metrics["env_steps_total"] >= max_env_steps)
        if last:  # the last report waits for the evaluation, so it carries the objective on fresh episodes
            pending.update(row)
        else:
            tune.report(row)

    success = train_and_evaluate(cfg, params, iterations, report, curriculum=True, max_env_steps=max_env_steps)
    final = objective_values(success, threshold)
    tune.report({**pending, **{f"success/{t}": s for t, s in success.items()}, **final,
                 "objective": final[objective], "evaluated": 1.0, "wall_time_s": time.perf_counter() - started})
