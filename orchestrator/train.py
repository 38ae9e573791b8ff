"""`mto train`: one multi-task RL run on Ray, tracked in MLflow, checkpointed, resumable."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.config import (
    ConfigError,
    ExperimentConfig,
    build_scheduler,
    flatten,
    load_config,
    resolve_item_names,
    resolve_task_space,
)
from orchestrator.progress import TrainingProgress, console, task_table
from orchestrator.tracking import (
    CONFIG_ARTIFACT,
    RUN_PATH_TAG,
    ensure_experiment,
    find_run,
    log_metrics_safe,
    log_params_safe,
    resolve_tracking_uri,
)

STATE_FILE = "trainer_state.json"
KEEP_CHECKPOINTS = 2
ACTOR_NAMESPACE = "mto"
GROUPS_TAG = "mto.groups"  # on the parent run of a `groups:` RL run


@dataclass
class TrainerState:
    """What the driver needs to continue a run: counters and the latest checkpoint."""

    iteration: int = 0
    env_steps: int = 0
    checkpoint: str | None = None
    mlflow_run_id: str | None = None
    history: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written state file

    @classmethod
    def load(cls, path: Path) -> "TrainerState":
        return cls(**json.loads(path.read_text()))


@dataclass
class TrainingSummary:
    """What `run_training` returns: where things are and how the run ended."""

    run_id: str
    run_path: Path
    tracking_uri: str
    iterations: int
    env_steps: int
    success_rate: dict[str, float]
    mastered: list[str]
    checkpoint: str | None


def connect_ray(address: str | None) -> bool:
    """Attach to a cluster (`--address`/`RAY_ADDRESS`) or start a local Ray. True if we connected."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address or None, logging_level=logging.WARNING, include_dashboard=False if not address else None,
             configure_logging=True)
    return True


def _new_run_path(cfg: ExperimentConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(cfg.run_dir).resolve() / f"{cfg.name}-{stamp}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def run_training(
    config_path: str | None = None,
    overrides: tuple[str, ...] = (),
    resume: str | None = None,
    address: str | None = None,
    live: bool | None = None,
    run_dir: str = "runs",
) -> TrainingSummary:
    """Train from a config file, or continue the run named by `resume` (an MLflow run id or name).

    The config is fully validated before anything is started or written.
    """
    if resume is None:
        assert config_path is not None
        cfg = load_config(config_path, overrides)
        if cfg.offline is not None:  # offline RL: CQL over a collected dataset, no RLlib
            from orchestrator.offline import train_offline

            return train_offline(cfg, live=live, address=address)
        tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, cfg.run_dir)
        run_path, state = None, TrainerState()
    else:
        cfg, tracking_uri, run_path, state = _locate_resume(resume, config_path, overrides, run_dir)

    mlflow.set_tracking_uri(tracking_uri)
    if run_path is None:
        run_path = _new_run_path(cfg)
        (run_path / CONFIG_ARTIFACT).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    experiment_id = ensure_experiment(cfg.tracking.experiment, tracking_uri, cfg.run_dir)

    started_ray = connect_ray(address)
    import ray

    algo = actor = None
    active = None
    try:
        if state.mlflow_run_id:
            active = mlflow.start_run(run_id=state.mlflow_run_id)
        else:
            active = mlflow.start_run(experiment_id=experiment_id, run_name=cfg.tracking.run_name or run_path.name)
            state.mlflow_run_id = active.info.run_id
            kind = "supervised" if cfg.is_supervised else "rl"
            mlflow.set_tags({RUN_PATH_TAG: str(run_path), "mto.config_name": cfg.name, "mto.kind": kind})
            log_params_safe(flatten(cfg.to_dict()))
            mlflow.log_artifact(str(run_path / CONFIG_ARTIFACT))
            state.save(run_path / STATE_FILE)
        console.print(f"[bold]run[/] {run_path.name}  [bold]mlflow[/] {tracking_uri}  run_id={state.mlflow_run_id}")

        if cfg.is_supervised:
            from orchestrator.supervised_run import run_supervised

            summary = run_supervised(cfg, run_path, state, live)
        elif cfg.groups is not None:
            summary = _train_groups(cfg, run_path, state, live)
        else:
            task_space = resolve_task_space(cfg)
            actor, algo = _start_actors(cfg, task_space, run_path, state)
            summary = _train_loop(cfg, task_space, algo, actor, run_path, state, live)
        summary.tracking_uri = tracking_uri
        mlflow.end_run("FINISHED")
        return summary
    except BaseException:
        if active is not None:
            mlflow.end_run("FAILED")
        raise
    finally:
        if algo is not None:
            algo.stop()
        if actor is not None:
            ray.kill(actor, no_restart=True)
        if started_ray:
            ray.shutdown()


def _locate_resume(resume: str, config_path: str | None, overrides: tuple[str, ...], run_dir: str):
    """Find the run to continue: its folder, its saved config (plus overrides), its state."""
    if config_path is not None:
        base = load_config(config_path)
        uri = resolve_tracking_uri(base.tracking.tracking_uri, base.run_dir)
    else:
        uri = resolve_tracking_uri(None, run_dir)
    run_path, state = locate_run(resume, uri, f"--resume {resume}", grouped_ok=True)
    cfg = load_config(run_path / CONFIG_ARTIFACT, overrides)
    return cfg, uri, run_path, state


def locate_run(run: str, tracking_uri: str, what: str, grouped_ok: bool = False) -> tuple[Path, TrainerState]:
    """The run folder and driver state of an MLflow run (id or name) that has a checkpoint
    (or, with ``grouped_ok``, the parent of a `groups:` run, whose groups hold the checkpoints).

    Raises `ConfigError` (a usage error, prefixed by `what`) when there is nothing to use.
    """
    try:
        found = find_run(run, tracking_uri)
    except LookupError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    run_path = Path(found.data.tags.get(RUN_PATH_TAG, ""))
    if found.data.tags.get("mto.kind") == "offline":
        raise ConfigError(f"{what}: '{run}' is an offline CQL run, which trains to the end in one go and cannot be "
                          f"continued; its Q-network is the MLflow artifact checkpoint/ (start a new run to train more)")
    state_file = run_path / STATE_FILE
    if not state_file.is_file():
        raise ConfigError(f"{what}: run folder {run_path} has no {STATE_FILE}")
    state = TrainerState.load(state_file)
    grouped = GROUPS_TAG in found.data.tags
    if grouped and not grouped_ok:
        groups = [f"{found.info.run_name}-group{g}" for g in range(len(json.loads(found.data.tags[GROUPS_TAG])))]
        raise ConfigError(f"{what}: '{run}' trained one network per group; use a group's own run: {', '.join(groups)}")
    if not state.checkpoint and not grouped:
        raise ConfigError(f"{what}: the run has no checkpoint yet")
    return run_path, state


def _start_actors(cfg: ExperimentConfig, task_space, run_path: Path, state: TrainerState):
    from orchestrator.curriculum_actor import start_curriculum_actor
    from orchestrator.rl import build_algorithm, env_config_for

    live_ckpt = run_path / "curriculum_live.pkl"
    if state.checkpoint:
        # Policy and curriculum go back to the same moment: the last full checkpoint.
        shutil.copyfile(Path(state.checkpoint) / "curriculum.pkl", live_ckpt)
    scheduler = build_scheduler(cfg, task_space.names, resolve_item_names(cfg))
    actor_name = f"curriculum-{state.mlflow_run_id}"
    actor = start_curriculum_actor(
        scheduler,
        name=actor_name,
        namespace=ACTOR_NAMESPACE,
        checkpoint_path=str(live_ckpt),
        checkpoint_every_seconds=cfg.curriculum.checkpoint_every_seconds,
    )
    algo = build_algorithm(cfg, env_config_for(cfg, list(task_space.names), actor_name, ACTOR_NAMESPACE))
    if state.checkpoint:
        algo.restore_from_path(str(Path(state.checkpoint) / "algorithm"))
    return actor, algo


def _save_checkpoint(algo, actor, run_path: Path, state: TrainerState) -> None:
    import ray

    from orchestrator.rl import flush_curriculum_reports

    ckpt = run_path / "checkpoints" / f"iter_{state.iteration:06d}"
    ckpt.mkdir(parents=True, exist_ok=True)
    algo.save_to_path(str(ckpt / "algorithm"))
    flush_curriculum_reports(algo)
    ray.get(actor.save_checkpoint.remote(str(ckpt / "curriculum.pkl")))
    state.checkpoint = str(ckpt)
    state.save(ckpt / STATE_FILE)
    state.save(run_path / STATE_FILE)
    mlflow.set_tag("mto.checkpoint", str(ckpt))
    old = sorted((run_path / "checkpoints").glob("iter_*"))[:-KEEP_CHECKPOINTS]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)


def _curriculum_metrics(metrics: dict[str, float], task_names) -> tuple[dict[str, float], float, list[str]]:
    """Select what we log from the actor's metrics; mean success and the mastered tasks."""
    logged = {k: v for k, v in metrics.items() if "/" in k}
    for key in ("entropy", "num_active_tasks", "num_bonus_items"):
        if key in metrics:
            logged[f"curriculum/{key}"] = metrics[key]
    success = [metrics.get(f"success_rate/{t}", 0.0) for t in task_names]
    mean_success = sum(success) / max(len(success), 1)
    return logged, mean_success, success


def _train_loop(cfg, task_space, algo, actor, run_path: Path, state: TrainerState, live) -> TrainingSummary:
    import ray

    from orchestrator.rl import iteration_metrics

    names = list(task_space.names)
    threshold = cfg.training.mastery_threshold
    budget = cfg.training.max_env_steps
    success: list[float] = [0.0] * len(names)
    measures_by_evaluation = cfg.curriculum.params.get("success_source", "online") == "evaluation"
    with TrainingProgress(cfg.training.iterations, state.iteration, live) as progress:
        while state.iteration < cfg.training.iterations and (budget is None or state.env_steps < budget):
            t0 = time.perf_counter()
            if measures_by_evaluation and ray.get(actor.evaluation_due.remote()):
                _evaluate_for_curriculum(cfg, algo, actor, state)
            result = algo.train()
            seconds = time.perf_counter() - t0
            metrics = iteration_metrics(result)
            state.iteration += 1
            state.env_steps += int(metrics["env_steps"])
            cur_metrics, mean_success, success = _curriculum_metrics(ray.get(actor.metrics.remote()), names)
            mastered = sum(s >= threshold for s in success)
            metrics.update(cur_metrics)
            metrics.update(
                {
                    "env_steps_total": state.env_steps,
                    "env_steps_per_second": metrics["env_steps"] / max(seconds, 1e-9),
                    "iteration_seconds": seconds,
                    "mean_success": mean_success,
                    "items_mastered": mastered,
                }
            )
            log_metrics_safe(metrics, step=state.iteration)
            progress.update(state.iteration, state.env_steps, metrics["env_steps_per_second"], mean_success, mastered, len(names))
            if state.iteration % cfg.training.checkpoint_every == 0:
                _save_checkpoint(algo, actor, run_path, state)
            if state.iteration % cfg.training.plot_every == 0:
                log_plots(state.mlflow_run_id, names, threshold)
    if state.checkpoint is None or not state.checkpoint.endswith(f"iter_{state.iteration:06d}"):
        _save_checkpoint(algo, actor, run_path, state)
    log_plots(state.mlflow_run_id, names, threshold)
    mlflow.log_artifact(str(Path(state.checkpoint) / "curriculum.pkl"), artifact_path="curriculum")
    _print_final_table(names, success, threshold)
    return _rl_summary(state, run_path, dict(zip(names, success)), threshold, state.checkpoint)


def _rl_summary(state: TrainerState, run_path: Path, success: dict[str, float], threshold: float,
                checkpoint: str | None) -> TrainingSummary:
    """The summary of an RL run (or group) from its driver state and per-task success."""
    return TrainingSummary(run_id=state.mlflow_run_id or "", run_path=run_path, tracking_uri="", iterations=state.iteration,
                           env_steps=state.env_steps, success_rate=success,
                           mastered=[n for n, s in success.items() if s >= threshold], checkpoint=checkpoint)


def _train_groups(cfg: ExperimentConfig, run_path: Path, state: TrainerState, live) -> TrainingSummary:
    """`groups:` on Simon Says: one PPO run (network + CurriculumActor) per group, one after the
    other, each a nested MLflow run with its own folder, checkpoints, `mto eval` and `--resume`;
    every task is reported from the group that serves it best. Resuming the parent skips
    finished groups and continues the interrupted one from its checkpoint."""
    from orchestrator.evaluate import best_success_per_task

    mlflow.set_tag(GROUPS_TAG, json.dumps(cfg.groups))
    summaries = []
    for g, group in enumerate(cfg.groups or []):
        summaries.append(_train_group(cfg, g, group, run_path, live))
        mlflow.set_tag(f"mto.checkpoint.group_{g}", summaries[-1].checkpoint or "")
    state.iteration = sum(s.iterations for s in summaries)
    state.env_steps = sum(s.env_steps for s in summaries)
    best = best_success_per_task(s.success_rate for s in summaries)
    names = list(resolve_task_space(cfg).names)
    success = [best.get(n, 0.0) for n in names]
    threshold = cfg.training.mastery_threshold
    log_metrics_safe({**{f"success_rate/{n}": s for n, s in zip(names, success)},
                      "mean_success": sum(success) / len(success), "items_mastered": sum(s >= threshold for s in success),
                      "env_steps_total": state.env_steps}, step=state.iteration)
    state.save(run_path / STATE_FILE)
    _print_final_table(names, success, threshold)
    return _rl_summary(state, run_path, dict(zip(names, success)), threshold, checkpoint=None)


def _train_group(cfg: ExperimentConfig, g: int, group: list[str], run_path: Path, live) -> TrainingSummary:
    """Train (or continue, or just read back) group ``g``'s run, nested under the active parent run."""
    import ray

    from orchestrator.config import config_for_tasks

    group_path = run_path / f"group_{g}"
    if (group_path / STATE_FILE).is_file():  # started before an interruption
        group_cfg = load_config(group_path / CONFIG_ARTIFACT)
        group_state = TrainerState.load(group_path / STATE_FILE)
    else:
        group_cfg = config_for_tasks(cfg.to_dict(), group, f"groups[{g}]", name=f"{cfg.name}-group{g}", groups=None)
        group_path.mkdir(exist_ok=True)
        (group_path / CONFIG_ARTIFACT).write_text(yaml.safe_dump(group_cfg.to_dict(), sort_keys=False))
        group_state = TrainerState()
    task_space = resolve_task_space(group_cfg)
    console.print(f"[bold]group {g}[/] {', '.join(group)}")
    parent = mlflow.active_run()
    if group_state.mlflow_run_id:
        opened = mlflow.start_run(run_id=group_state.mlflow_run_id, nested=True)
    else:
        opened = mlflow.start_run(experiment_id=parent.info.experiment_id, run_name=f"{parent.info.run_name}-group{g}",
                                  nested=True)
    with opened as child:
        if group_state.mlflow_run_id is None:
            group_state.mlflow_run_id = child.info.run_id
            mlflow.set_tags({RUN_PATH_TAG: str(group_path), "mto.config_name": group_cfg.name, "mto.kind": "rl",
                             "mto.group": g})
            log_params_safe(flatten(group_cfg.to_dict()))
            mlflow.log_artifact(str(group_path / CONFIG_ARTIFACT))
            group_state.save(group_path / STATE_FILE)
        budget = group_cfg.training.max_env_steps
        if group_state.checkpoint and (group_state.iteration >= group_cfg.training.iterations
                                       or (budget is not None and group_state.env_steps >= budget)):
            return _finished_group(group_cfg, group_path, group_state)
        actor = algo = None
        try:
            actor, algo = _start_actors(group_cfg, task_space, group_path, group_state)
            return _train_loop(group_cfg, task_space, algo, actor, group_path, group_state, live)
        finally:
            if algo is not None:
                algo.stop()
            if actor is not None:
                ray.kill(actor, no_restart=True)


def _finished_group(cfg: ExperimentConfig, run_path: Path, state: TrainerState) -> TrainingSummary:
    """A group that finished before the parent was interrupted: its final numbers, from MLflow."""
    metrics = MlflowClient(mlflow.get_tracking_uri()).get_run(state.mlflow_run_id).data.metrics
    success = {n: metrics.get(f"success_rate/{n}", 0.0) for n in resolve_task_space(cfg).names}
    return _rl_summary(state, run_path, success, cfg.training.mastery_threshold, state.checkpoint)


def _evaluate_for_curriculum(cfg, algo, actor, state: TrainerState) -> None:
    """Evaluation-mode curricula measure success on fresh episodes of every task, run here
    with the learner's current policy, instead of on the curriculum-chosen training episodes."""
    import ray

    from orchestrator.evaluate import evaluation_episodes

    outcomes = evaluation_episodes(
        algo.get_module(), cfg, cfg.curriculum.evaluation_episodes_per_task, greedy=False, seed=cfg.seed + state.iteration
    )
    ray.get(actor.report.remote(outcomes))


def log_plots(run_id: str | None, order, mastery_threshold: float) -> None:
    """Draw the success curves and the distribution heatmap from the run's MLflow history."""
    import tempfile

    from orchestrator.report import draw_curriculum_plots

    client = MlflowClient(mlflow.get_tracking_uri())
    with tempfile.TemporaryDirectory() as tmp:
        for path in draw_curriculum_plots(client, run_id, Path(tmp), order, mastery_threshold):
            mlflow.log_artifact(str(path), "plots")


def _print_final_table(names, success, threshold) -> None:
    rows = [(n, s, "yes" if s >= threshold else "") for n, s in zip(names, success)]
    console.print(task_table("Per-task success (curriculum's running estimate)", rows, ["task", "success_rate", "mastered"]))
    console.print(f"mastered {sum(s >= threshold for s in success)}/{len(names)} tasks (success >= {threshold})")
