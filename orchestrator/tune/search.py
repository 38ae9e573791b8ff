"""`mto tune-groups` and `mto pareto`: Ray Tune searches over multi-task runs; the search session,
Tune experiment and nested-run logging that `mto tune` (``orchestrator.tune.hyperparameters``) shares.

tune-groups (TAG, Fifty et al. 2021), for the supervised families and Simon Says:
  1. one Tune trial co-trains every task in one network and measures the lookahead
     affinity (supervised: ``run_epochs(affinity_every=...)``; Simon Says: the PPO
     learner's per-task losses, ``orchestrator.tune.rl_trials``);
  2. ``curricula.grouping.choose_groupings`` picks the ``tune.top_k`` best groupings;
  3. one Tune trial per candidate trains one network per group to a fixed budget
     (trials run in parallel, ``tune.trial_cpus``/``trial_gpus`` each, plus the
     EnvRunners' and Learners' bundles for RL); a task counts with the group whose
     network serves it best (lowest validation loss / highest success);
  4. the grouping with the lowest total validation loss (supervised) or the highest
     mean success on fresh episodes (Simon Says) wins.
pareto: one Tune trial per preference vector, each a Pareto MTL run (supervised families).

Both log a parent MLflow run (params, heatmap / front plot, tables, the chosen
grouping as YAML usable as ``groups:``) with one nested run per Tune trial, keep
Tune's results under ``tune.storage_path`` (default ``<run_dir>/tune``) and
continue an interrupted search with ``resume=True`` (``Tuner.restore``:
finished trials are kept, unfinished ones start again).
"""

from __future__ import annotations

from contextlib import contextmanager

import itertools
import json
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from orchestrator.config import ConfigError, ExperimentConfig, flatten, load_config
from orchestrator.runs.progress import console, task_table
from orchestrator.runs.redaction import without_userinfo
from orchestrator.runs.tracking import (
    ensure_experiment,
    inherited_parent_run_id,
    log_params_safe,
    resolve_tracking_uri,
    search_runs_equal,
    start_new_run,
    tracking_client,
)

SEARCH_STATE = "search_state.json"
GROUPS_ARTIFACT = "groups.yaml"
# Keys our trials report (Tune adds its own bookkeeping keys, which are not logged to MLflow).
TRIAL_METRIC_PREFIXES = ("val", "test", "train", "affinity", "loss", "distance", "in_sector", "epoch", "group", "steps",
                         "success", "mean_success", "env_steps", "episode_return_mean", "iteration", "wall_time_s",
                         "objective", "items_mastered", "online/")


@dataclass(frozen=True)
class Objective:
    """What picks the winning grouping: a trial metric and whether lower or higher is better."""

    metric: str
    lower_is_better: bool

    def best(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        pick = min if self.lower_is_better else max
        return pick(rows, key=lambda r: r[self.metric])


VALIDATION_LOSS = Objective("val_loss_total", lower_is_better=True)
MEAN_SUCCESS = Objective("mean_success", lower_is_better=False)


@dataclass
class GroupingSearchPlan:
    """How `mto tune-groups` runs for one family: its trials, their parameters, budgets and objective."""

    task_names: tuple[str, ...]
    objective: Objective
    affinity_trial: Callable
    affinity_params: dict[str, Any]
    affinity_budget: int  # epochs / PPO iterations of the co-training run
    grouping_trial: Callable
    grouping_params: dict[str, Any]
    grouping_budget: int  # epochs / PPO iterations per network in a grouping trial


@dataclass
class SearchResult:
    """What a search produced, on the driver."""

    parent_run_id: str
    search_path: Path
    tracking_uri: str
    trials: list[dict[str, Any]]  # one per Tune trial (params and final metrics), in trial order
    best: dict[str, Any] = field(default_factory=dict)
    affinity: np.ndarray | None = None
    task_names: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- trials (run on Ray workers)


def _loop_config(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    from orchestrator.supervised.training import _config

    dataset = params["dataset"]
    config, _ = _config(
        dataset, params["architecture"], params["combiner"], params["hidden"], params["epochs"], params["batch_size"],
        params["lr"], params["seed"], params["combiner_params"], params["architecture_params"],
        extra.pop("tasks", None), extra.pop("affinity_every", None), extra.pop("affinity_lr", None),
    )
    config.update(extra)
    return config


def _device(params: dict[str, Any]):
    import torch

    torch.set_num_threads(max(1, int(params["trial_cpus"])))
    return "cuda" if params["trial_gpus"] > 0 and torch.cuda.is_available() else "cpu"


def affinity_trial(config: dict[str, Any], params: dict[str, Any]) -> None:
    """Co-train every task in one network and measure affinity; report every epoch."""
    from ray import tune

    from orchestrator.supervised.training import run_epochs

    loop = _loop_config(params, affinity_every=params["affinity_every"], affinity_lr=params["affinity_lr"])
    started = time.perf_counter()

    def report(metrics: dict[str, float], state: dict[str, Any]) -> None:
        tune.report({**metrics, "wall_time_s": time.perf_counter() - started})

    run_epochs(loop, params["dataset"], report, device=_device(params))


def grouping_trial(config: dict[str, Any], params: dict[str, Any]) -> None:
    """Train one network per group of candidate ``config["candidate"]``; the last report has
    ``val_loss_total``: sum over tasks of the task's lowest validation loss over its groups."""
    from ray import tune

    from orchestrator.supervised.training import run_epochs

    groups: list[list[str]] = params["candidates"][config["candidate"]]
    finals: list[dict[str, float]] = []
    device = _device(params)
    started = time.perf_counter()
    for g, group in enumerate(groups):
        last: dict[str, float] = {}

        def report(metrics: dict[str, float], state: dict[str, Any], g: int = g) -> None:
            last.clear()
            last.update(metrics)
            tune.report({"group": g, "epoch": metrics["epoch"], **{f"group_{g}/{k}": v for k, v in metrics.items()
                                                                   if k.startswith(("val/", "train/"))}})

        run_epochs(_loop_config(params, tasks=list(group)), params["dataset"], report, device=device)
        finals.append(dict(last))
    names = sorted({n for group in groups for n in group})
    final: dict[str, float] = {}
    for n in names:
        best = min((m for m in finals if f"val/loss/{n}" in m), key=lambda m: m[f"val/loss/{n}"])
        final[f"val/loss/{n}"] = best[f"val/loss/{n}"]
        if f"test/loss/{n}" in best:
            final[f"test/loss/{n}"] = best[f"test/loss/{n}"]
    final["val_loss_total"] = sum(final[f"val/loss/{n}"] for n in names)
    final["wall_time_s"] = time.perf_counter() - started
    tune.report({"group": len(groups), **final})


def pareto_trial(config: dict[str, Any], params: dict[str, Any]) -> None:
    """One Pareto MTL run following preference ``config["preference_index"]``."""
    import torch
    from ray import tune

    from policies import ParetoMTL

    k = int(config["preference_index"])
    prefs = np.asarray(params["preferences"])
    dataset = params["dataset"]
    names = dataset.task_space.names
    if dataset.target == "objective":  # pareto_toy: the decision variable itself is trained
        from tasks.supervised import pareto_toy

        centre = torch.tensor(dataset.split("train").x, dtype=torch.float64)
        torch.manual_seed(params["seed"] + k)
        x = (torch.rand(centre.shape[1], dtype=torch.float64) - 0.5).requires_grad_()
        combiner = ParetoMTL(len(names), preference_index=k, preferences=prefs, max_init_steps=params["max_init_steps"])
        steps = params["pareto_steps"]
        every = max(1, steps // 20)
        for step in range(1, steps + 1):
            f = pareto_toy.objectives(x, centre)
            grads = torch.stack([torch.autograd.grad(f[t], x, retain_graph=True)[0] for t in range(len(names))])
            direction = combiner(grads, f.detach())
            with torch.no_grad():
                x -= params["pareto_lr"] * direction
            if step % every == 0 or step == steps:
                values = pareto_toy.objectives(x, centre).detach().numpy()
                cosines = prefs @ (values / max(np.linalg.norm(values), 1e-12))
                tune.report({"steps": step, **{f"loss/{n}": float(v) for n, v in zip(names, values)},
                             "distance_to_front": pareto_toy.distance_to_front(values),
                             "in_sector": float(int(np.argmax(cosines)) == k)})
        return

    from orchestrator.supervised.training import run_epochs

    loop = _loop_config(params)
    loop.update(combiner="pareto_mtl", combiner_params={"preference_index": k, "preferences": prefs.tolist(),
                                                        "max_init_steps": params["max_init_steps"]})

    def report(metrics: dict[str, float], state: dict[str, Any]) -> None:
        values = np.array([metrics[f"val/loss/{n}"] for n in names])
        cosines = prefs @ (values / max(np.linalg.norm(values), 1e-12))
        tune.report({**metrics, **{f"loss/{n}": float(v) for n, v in zip(names, values)},
                     "in_sector": float(int(np.argmax(cosines)) == k)})

    run_epochs(loop, dataset, report, device=_device(params))


# ----------------------------------------------------------------------------- preference vectors


def simplex_lattice(num_tasks: int, divisions: int) -> np.ndarray:
    """Every point of the simplex whose coordinates are multiples of 1/divisions, as unit vectors."""
    points = [c for c in itertools.product(range(divisions + 1), repeat=num_tasks) if sum(c) == divisions]
    v = np.array(sorted(points, reverse=True), dtype=np.float64) / divisions
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def search_preferences(num_tasks: int, num_preferences: int) -> np.ndarray:
    """2 tasks: ``num_preferences`` angles evenly spread on [0, pi/2]; more: the coarsest
    simplex lattice with at least ``num_preferences`` points (all of them)."""
    from policies.combiners import preference_vectors

    if num_tasks == 2:
        return preference_vectors(2, num_preferences)
    divisions = 1
    while math.comb(divisions + num_tasks - 1, num_tasks - 1) < num_preferences:
        divisions += 1
    return simplex_lattice(num_tasks, divisions)


# ----------------------------------------------------------------------------- driver side


class TrialProgress(Callback):
    """Tune callback: one line per trial result on the terminal (trials done, iteration, key numbers)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        shown = " | ".join(f"{k} {result[k]:.4f}" for k in self.keys if isinstance(result.get(k), float | int))
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        console.print(f"[{done}/{len(trials)} trials done] {trial.trial_id} {trial.config} "
                      f"report {result.get('training_iteration')} | {shown}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        console.print(f"trial {trial.trial_id} {trial.config} finished")


def _fit(name: str, search_path: Path, trainable: Callable, params: dict[str, Any], param_space: dict[str, Any],
         cfg: ExperimentConfig, resume: bool, keys: tuple[str, ...], resources: Any = None,
         tune_config: dict[str, Any] | None = None, fail_on_error: bool = True):
    """Run (or restore and finish) one Tune experiment under the search folder; its ResultGrid.

    ``resources``: per trial (default: from ``cfg``; may be a function of the trial's config);
    ``tune_config``: more `tune.TuneConfig` arguments (num_samples, scheduler, metric, ...);
    ``fail_on_error=False`` returns the grid with failed trials in it instead of raising."""
    from ray import tune

    if resources is None and cfg.is_supervised:
        resources = {"cpu": cfg.tune.trial_cpus, "gpu": cfg.tune.trial_gpus}
    elif resources is None:
        from orchestrator.tune.rl_trials import trial_resources

        resources = trial_resources(cfg)
    wrapped = tune.with_resources(tune.with_parameters(trainable, params=params), resources)
    path = search_path / name
    if resume and tune.Tuner.can_restore(str(path)):
        console.print(f"[bold]resuming[/] Tune experiment {path}")
        tuner = tune.Tuner.restore(str(path), trainable=wrapped, resume_errored=True)
    else:
        tuner = tune.Tuner(
            wrapped,
            param_space=param_space,
            tune_config=tune.TuneConfig(max_concurrent_trials=cfg.tune.max_concurrent_trials, **(tune_config or {})),
            run_config=tune.RunConfig(name=name, storage_path=str(search_path), verbose=0,
                                      callbacks=[TrialProgress(keys)]),
        )
    grid = tuner.fit()
    errors = [r.error for r in grid if r.error is not None]
    if errors and fail_on_error:
        raise RuntimeError(f"{len(errors)} Tune trial(s) of {name} failed; first: {errors[0]}")
    return grid


def _trial_metrics(result) -> dict[str, float]:
    return {k: float(v) for k, v in result.metrics.items()
            if k.startswith(TRIAL_METRIC_PREFIXES) and isinstance(v, int | float) and math.isfinite(float(v))}


def _log_nested(client: MlflowClient, experiment_id: str, parent_id: str, kind: str, run_name: str,
                params: dict[str, Any], result, status: str = "FINISHED") -> str:
    """One nested MLflow run per Tune trial: its params, per-report metric history and final metrics."""
    existing = search_runs_equal(client, [experiment_id], "tags.`mto.trial_id`", result.path, max_results=1)
    if existing:  # logged before an interruption
        return existing[0].info.run_id
    run = client.create_run(experiment_id, run_name=run_name, tags={"mlflow.parentRunId": parent_id, "mto.kind": kind,
                                                                     "mto.trial_id": result.path})
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    frame = result.metrics_dataframe
    if frame is not None:
        for _, row in frame.iterrows():
            step = int(row.get("training_iteration", 0))
            for key, value in row.items():
                if isinstance(key, str) and key.startswith(TRIAL_METRIC_PREFIXES) and isinstance(value, int | float) \
                        and math.isfinite(float(value)):
                    metrics.append(Metric(key, float(value), now, step))
    for start in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 90):
        client.log_batch(run_id, params=items[start : start + 90])
    client.set_terminated(run_id, status)
    return run_id


def _prepare(config_path: str | Path, overrides: tuple[str, ...], kind: str, resume: bool,
             check: Callable[[ExperimentConfig, str], None] | None = None):
    cfg = load_config(config_path, overrides)
    if check is not None:  # the search's own checks, before anything is written
        check(cfg, str(config_path))
    if cfg.offline is not None:
        raise ConfigError(f"{config_path}: offline: `mto {kind}` searches online training runs; remove the offline section")
    if kind == "pareto" and not cfg.is_supervised:
        raise ConfigError(f"{config_path}: task.family: `mto pareto` sweeps Pareto MTL, which needs positive task losses: "
                          f"supervised families (multi_digit, grouped_regression, pareto_toy), not '{cfg.task.family}'")
    if kind == "tune-groups" and cfg.model.architecture == "mlp":
        raise ConfigError(f"{config_path}: model.architecture: task affinity is measured on the shared parameters of a "
                          "multi-task architecture; valid choices: shared_bottom, separate_bottom, model_patch, soft_modular")
    storage = Path(cfg.tune.storage_path or Path(cfg.run_dir) / "tune").expanduser().resolve()
    prefix = f"{cfg.name}-{kind}-"
    previous = sorted(p for p in storage.glob(prefix + "*") if (p / SEARCH_STATE).is_file()) if storage.is_dir() else []
    if resume:
        if not previous:
            raise ConfigError(f"--resume: no earlier `mto {kind}` search of '{cfg.name}' under {storage}")
        search_path = previous[-1]
        state = _read_state(search_path)
    else:
        # An inherited MLFLOW_RUN_ID that is not a run of our store stops here, before a folder exists.
        inherited_parent_run_id(tracking_client(resolve_tracking_uri(cfg.tracking.tracking_uri, cfg.run_dir)))
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        search_path = storage / f"{prefix}{stamp}-{uuid.uuid4().hex[:6]}"
        search_path.mkdir(parents=True)
        state = {}
    return cfg, search_path, state


def _save_state(search_path: Path, state: dict[str, Any]) -> None:
    tmp = search_path / (SEARCH_STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, search_path / SEARCH_STATE)  # a crash leaves the old state or the new one, never half


def _read_state(search_path: Path) -> dict[str, Any]:
    """The interrupted search's state; one torn by a crash (written before saves were atomic, or a
    damaged disk) is set aside as ``<name>.torn`` with one warning, and the search goes on under a
    new parent run (Tune's own results, kept under its storage, are restored all the same)."""
    from orchestrator.runs.torn_files import torn_path, warn_torn

    path = search_path / SEARCH_STATE
    try:
        state = json.loads(path.read_text())
        if isinstance(state, dict):
            return state
        problem = f"not a mapping: {type(state).__name__}"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        problem = f"{type(exc).__name__}: {exc}"
    os.replace(path, torn_path(path))
    warn_torn(path, f"{problem}; set aside as {torn_path(path)}, the search continues under a new parent run")
    return {}


def _dataset(cfg: ExperimentConfig, search_path: Path):
    from orchestrator.supervised.run import prepare_dataset
    from tasks.supervised import read_dataset

    path = prepare_dataset(cfg, search_path)
    return path, read_dataset(path, name=cfg.task.family)


def _base_params(cfg: ExperimentConfig, dataset, epochs: int) -> dict[str, Any]:
    return {
        "dataset": dataset, "architecture": cfg.model.architecture, "combiner": cfg.model.combiner,
        "hidden": list(cfg.model.hidden), "architecture_params": dict(cfg.model.architecture_params),
        "combiner_params": dict(cfg.model.combiner_params), "epochs": epochs, "batch_size": cfg.supervised.batch_size,
        "lr": cfg.supervised.lr, "seed": cfg.seed, "trial_cpus": cfg.tune.trial_cpus, "trial_gpus": cfg.tune.trial_gpus,
    }


def _start_parent(cfg: ExperimentConfig, kind: str, search_path: Path, state: dict[str, Any]):
    tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, cfg.run_dir)
    experiment_id = ensure_experiment(cfg.tracking.experiment, tracking_uri, cfg.run_dir)
    mlflow.set_tracking_uri(tracking_uri)
    if state.get("parent_run_id"):
        active = mlflow.start_run(run_id=state["parent_run_id"])
    else:
        active = start_new_run(tracking_client(tracking_uri), experiment_id, cfg.tracking.run_name or search_path.name,
                               {"mto.kind": kind, "mto.config_name": cfg.name, "mto.search_path": str(search_path)})
        state["parent_run_id"] = active.info.run_id
        log_params_safe(flatten(cfg.to_dict()))
        _save_state(search_path, state)
    console.print(f"[bold]{kind}[/] {search_path}  [bold]mlflow[/] {without_userinfo(tracking_uri)}  run_id={active.info.run_id}")
    return tracking_uri, experiment_id, active.info.run_id


@contextmanager
def _search_session(config_path, overrides, kind: str, resume: bool, address: str | None,
                    check: Callable[[ExperimentConfig, str], None] | None = None):
    """Config, Ray connection and the parent MLflow run of one search; ends both however the search ends.
    ``check(cfg, source)`` raises `ConfigError` for what the search itself cannot use."""
    from orchestrator.runs.session import connect_ray

    cfg, search_path, state = _prepare(config_path, overrides, kind, resume, check)
    started_ray = connect_ray(address)
    import ray

    try:
        tracking_uri, experiment_id, parent_id = _start_parent(cfg, kind, search_path, state)
        try:
            yield cfg, search_path, state, tracking_uri, experiment_id, parent_id, MlflowClient(tracking_uri)
            mlflow.end_run("FINISHED")
        except BaseException:
            mlflow.end_run("FAILED")
            raise
    finally:
        if started_ray:
            ray.shutdown()


def run_tune_groups(config_path: str | Path, overrides: tuple[str, ...] = (), address: str | None = None,
                    resume: bool = False) -> SearchResult:
    """`mto tune-groups`: measure affinity in one co-training trial, then train the top-K groupings as trials."""
    from curricula.grouping import choose_groupings

    with _search_session(config_path, overrides, "tune-groups", resume, address) as session:
        cfg, search_path, state, tracking_uri, experiment_id, parent_id, client = session
        plan = _supervised_plan(cfg, search_path) if cfg.is_supervised else _rl_plan(cfg)
        names, objective = plan.task_names, plan.objective
        grid = _fit("affinity", search_path, plan.affinity_trial, plan.affinity_params, {}, cfg, resume,
                    ("val/loss", "episode_return_mean", "affinity_time_s", "mean_success"))
        co_training = grid[0]
        final = co_training.metrics
        affinity = np.array([[final.get(f"affinity/{a}/{b}", 0.0) if a != b else 0.0 for b in names] for a in names])
        _log_nested(client, experiment_id, parent_id, "affinity", "co-training (affinity)",
                    {"budget": plan.affinity_budget, "affinity_every": cfg.tune.affinity_every}, co_training)

        if "candidates" not in state:  # a resumed search trains the same candidates
            found = choose_groupings(affinity, names, cfg.tune.max_groups, top_k=cfg.tune.top_k,
                                     beam_width=cfg.tune.beam_width)
            state["candidates"] = [g.as_lists() for g in found]
            state["affinity_scores"] = [g.score for g in found]
            _save_state(search_path, state)
        candidates = state["candidates"]
        grid = _fit("groupings", search_path, plan.grouping_trial, {**plan.grouping_params, "candidates": candidates},
                    {"candidate": _grid(list(range(len(candidates))))}, cfg, resume, (objective.metric,))
        trials = []
        for result in sorted(grid, key=lambda r: r.config["candidate"]):
            c = result.config["candidate"]
            row = {"candidate": c, "groups": candidates[c], "affinity_score": state["affinity_scores"][c],
                   **_trial_metrics(result)}
            trials.append(row)
            _log_nested(client, experiment_id, parent_id, "grouping", f"grouping {c}",
                        {"candidate": c, "groups": json.dumps(candidates[c]), "budget": plan.grouping_budget,
                         "affinity_score": state["affinity_scores"][c]}, result)
        best = objective.best(trials)
        _log_groups_parent(search_path, affinity, names, trials, best, co_training, objective)
    # Affinity scores of PPO losses are of order 1e-3: three significant digits, not two decimals.
    rows = [(str(r["candidate"]), " | ".join(",".join(g) for g in r["groups"]), f"{r['affinity_score']:.3g}",
             r[objective.metric]) for r in trials]
    console.print(task_table("Candidate groupings", rows, ["candidate", "groups", "affinity", objective.metric]))
    console.print(f"chosen grouping (candidate {best['candidate']}): {best['groups']}  -> {search_path / GROUPS_ARTIFACT}")
    return SearchResult(parent_id, search_path, tracking_uri, trials, best, affinity, names)


def _supervised_plan(cfg: ExperimentConfig, search_path: Path) -> GroupingSearchPlan:
    """Supervised families: epochs of the torch training loop in each trial, scored by total validation loss."""
    _, dataset = _dataset(cfg, search_path)
    epochs = cfg.tune.affinity_epochs or cfg.supervised.epochs
    budget = cfg.tune.budget_epochs or cfg.supervised.epochs
    return GroupingSearchPlan(
        dataset.task_space.names, VALIDATION_LOSS,
        affinity_trial, {**_base_params(cfg, dataset, epochs), "affinity_every": cfg.tune.affinity_every,
                         "affinity_lr": cfg.tune.affinity_lr}, epochs,
        grouping_trial, _base_params(cfg, dataset, budget), budget)


def _rl_plan(cfg: ExperimentConfig) -> GroupingSearchPlan:
    """Simon Says: PPO trials (``orchestrator.tune.rl_trials``), scored by mean success."""
    from orchestrator.config import resolve_task_space
    from orchestrator.tune.rl_trials import rl_affinity_trial, rl_grouping_trial

    names = resolve_task_space(cfg).names
    base = {"config": cfg.to_dict(), "tasks": list(names), "trial_cpus": cfg.tune.trial_cpus}
    iterations = cfg.tune.affinity_iterations or cfg.training.iterations
    budget = cfg.tune.budget_iterations or cfg.training.iterations
    return GroupingSearchPlan(
        names, MEAN_SUCCESS,
        rl_affinity_trial, {**base, "iterations": iterations, "affinity_every": cfg.tune.affinity_every,
                            "affinity_lr": cfg.tune.affinity_lr}, iterations,
        rl_grouping_trial, {**base, "iterations": budget}, budget)


def _grid(values: list[Any]) -> Any:
    from ray import tune

    return tune.grid_search(values)


def _log_groups_parent(search_path: Path, affinity: np.ndarray, names, trials, best, co_training,
                       objective: Objective) -> None:
    (search_path / GROUPS_ARTIFACT).write_text(yaml.safe_dump({"groups": best["groups"]}, sort_keys=False))
    mlflow.log_artifact(str(search_path / GROUPS_ARTIFACT))
    # The co-training run is the all-tasks-in-one-network baseline the chosen grouping should beat.
    co_score = (sum(co_training.metrics.get(f"val/loss/{n}", 0.0) for n in names) if objective is VALIDATION_LOSS
                else co_training.metrics.get(objective.metric, float("nan")))
    mlflow.log_metrics({f"best/{objective.metric}": best[objective.metric], "best/candidate": best["candidate"],
                        f"co_training/{objective.metric}": co_score,
                        "co_training/affinity_time_s": co_training.metrics.get("affinity_time_s", 0.0)})
    mlflow.set_tag("mto.chosen_groups", json.dumps(best["groups"]))
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(plot_affinity_heatmap(affinity, names, Path(tmp) / "affinity.png")), "plots")
        table = Path(tmp) / "groupings.json"
        table.write_text(json.dumps(trials, indent=2))
        mlflow.log_artifact(str(table))


def plot_affinity_heatmap(affinity: np.ndarray, names, path: Path) -> Path:
    """Source task (rows) x task acted on (columns); red helps, blue hurts."""
    from orchestrator.runs.plots import plt, save_figure

    limit = float(np.nanmax(np.abs(affinity))) or 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * len(names), 0.8 + 0.5 * len(names)))
    im = ax.imshow(affinity, cmap="coolwarm", vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("task j (loss after the step)")
    ax.set_ylabel("source task i (step on its loss)")
    ax.set_title("Lookahead affinity i -> j")
    fig.colorbar(im, ax=ax)
    return save_figure(fig, path)


def run_pareto(config_path: str | Path, overrides: tuple[str, ...] = (), address: str | None = None,
               resume: bool = False) -> SearchResult:
    """`mto pareto`: one Pareto MTL trial per preference vector; table and front plot on the parent run."""
    with _search_session(config_path, overrides, "pareto", resume, address) as session:
        cfg, search_path, state, tracking_uri, experiment_id, parent_id, client = session
        _, dataset = _dataset(cfg, search_path)
        names = dataset.task_space.names
        prefs = search_preferences(len(names), cfg.tune.num_preferences)
        params = {**_base_params(cfg, dataset, cfg.tune.budget_epochs or cfg.supervised.epochs),
                  "preferences": prefs.tolist(), "pareto_steps": cfg.tune.pareto_steps,
                  "pareto_lr": cfg.tune.pareto_lr, "max_init_steps": cfg.tune.max_init_steps}
        keys = tuple(f"loss/{n}" for n in names) + ("distance_to_front",)
        grid = _fit("preferences", search_path, pareto_trial, params,
                    {"preference_index": _grid(list(range(len(prefs))))}, cfg, resume, keys)
        trials = []
        for result in sorted(grid, key=lambda r: r.config["preference_index"]):
            k = result.config["preference_index"]
            trials.append({"preference_index": k, "preference": prefs[k].round(4).tolist(), **_trial_metrics(result)})
            _log_nested(client, experiment_id, parent_id, "pareto", f"preference {k}",
                        {"preference_index": k, "preference": json.dumps(prefs[k].round(6).tolist())}, result)
        _log_pareto_parent(cfg, names, prefs, trials)
    columns = ["preference"] + [f"loss/{n}" for n in names] + (["distance_to_front"] if cfg.task.family == "pareto_toy" else [])
    rows = [(str(r["preference"]), *[r.get(c, float("nan")) for c in columns[1:]]) for r in trials]
    console.print(task_table("Pareto MTL: one run per preference vector", rows, columns))
    return SearchResult(parent_id, search_path, tracking_uri, trials, {}, None, names)


def _log_pareto_parent(cfg, names, prefs: np.ndarray, trials) -> None:
    lines = ["| preference | " + " | ".join(names) + " | distance_to_front | in_sector |",
             "| --- " * (len(names) + 3) + "|"]
    for r in trials:
        lines.append(f"| {r['preference']} | " + " | ".join(f"{r.get(f'loss/{n}', float('nan')):.4f}" for n in names)
                     + f" | {r.get('distance_to_front', float('nan')):.4g} | {bool(r.get('in_sector', 0))} |")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pareto_results.md").write_text("\n".join(lines) + "\n")
        (Path(tmp) / "pareto_results.json").write_text(json.dumps(trials, indent=2))
        mlflow.log_artifact(str(Path(tmp) / "pareto_results.md"))
        mlflow.log_artifact(str(Path(tmp) / "pareto_results.json"))
        front = None
        if cfg.task.family == "pareto_toy":
            from tasks.supervised import pareto_toy

            front = pareto_toy.pareto_front()
        mlflow.log_artifact(str(plot_front(trials, names, prefs, Path(tmp) / "pareto_front.png", front)), "plots")
    distances = [r["distance_to_front"] for r in trials if "distance_to_front" in r]
    if distances:
        mlflow.log_metric("max_distance_to_front", max(distances))
    mlflow.log_metric("solutions_in_own_sector", sum(r.get("in_sector", 0.0) for r in trials))


def plot_front(trials, names, prefs: np.ndarray, path: Path, front: np.ndarray | None = None) -> Path:
    """Solutions in the plane of the first two tasks' losses, preference rays, and the analytic front if known."""
    from orchestrator.runs.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 5.5))
    if front is not None:
        ax.plot(front[:, 0], front[:, 1], color="black", linewidth=1, label="analytic Pareto front")
    points = np.array([[r.get(f"loss/{names[0]}", np.nan), r.get(f"loss/{names[1]}", np.nan)] for r in trials])
    reach = float(np.nanmax(points)) * 1.1 if np.isfinite(points).any() else 1.0
    for k, u in enumerate(prefs):
        ax.plot([0, reach * u[0]], [0, reach * u[1]], color="grey", linestyle=":", linewidth=0.8)
    ax.scatter(points[:, 0], points[:, 1], c=range(len(points)), cmap="viridis", zorder=3, label="Pareto MTL runs")
    for k, (x, y) in enumerate(points):
        ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"loss {names[0]}")
    ax.set_ylabel(f"loss {names[1]}")
    ax.set_title("Pareto MTL: one solution per preference vector (dotted)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
