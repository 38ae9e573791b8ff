"""`mto train` for RL: one multi-task PPO run on Ray (CurriculumActor + RLlib algorithm), logged to
MLflow every iteration, checkpointed, resumable; `groups:` trains one such run per group."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.config import (
    ExperimentConfig,
    build_scheduler,
    flatten,
    load_config,
    resolve_item_names,
    resolve_task_space,
)
from orchestrator.runs.checkpoints import (
    TrainingInterrupted,
    checkpoint_dirs,
    checkpoint_name,
    staging_dir,
    write_manifest,
)
from orchestrator.runs.metrics_buffer import MetricsSpool, fail_fast_tracking
from orchestrator.runs.progress import TrainingProgress, console, task_table
from orchestrator.runs.redaction import redacted
from orchestrator.runs.run_folder import (
    GROUPS_TAG,
    STATE_FILE,
    TrainerState,
    TrainingSummary,
    checked_resume_state,
    read_trainer_state,
)
from orchestrator.runs.tracking import CONFIG_ARTIFACT, RUN_PATH_TAG, log_metrics_safe, log_params_safe

KEEP_CHECKPOINTS = 2
# How long a run waits for RLlib to bring back EnvRunners that all died (Ray notices a lost
# node after ~30 s, and an EnvRunner's restart rebuilds its environments).
NO_SAMPLES_TIMEOUT_S = 300.0
ACTOR_NAMESPACE = "mto"


def train_rl(cfg: ExperimentConfig, run_path: Path, state: TrainerState, live: bool | None) -> TrainingSummary:
    """Train (or continue from ``state.checkpoint``) inside an open MLflow run; stops every actor it starts."""
    if cfg.groups is not None:
        return _train_groups(cfg, run_path, state, live)
    return _train_one(cfg, resolve_task_space(cfg), run_path, state, live)


def _train_one(cfg: ExperimentConfig, task_space, run_path: Path, state: TrainerState, live) -> TrainingSummary:
    """One network and one CurriculumActor, trained to the config's end; both stopped afterwards."""
    import ray

    actor = algo = None
    try:
        actor, algo = _start_actors(cfg, task_space, run_path, state)
        return _train_loop(cfg, task_space, algo, actor, run_path, state, live)
    finally:
        if algo is not None:
            algo.stop()
        if actor is not None:
            ray.kill(actor, no_restart=True)


def _start_actors(cfg: ExperimentConfig, task_space, run_path: Path, state: TrainerState):
    from orchestrator.rl.curriculum_actor import start_curriculum_actor
    from orchestrator.rl.algorithm import build_algorithm, env_config_for

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
        publish_every_seconds=publish_cadence(cfg),
    )
    algo = build_algorithm(cfg, env_config_for(cfg, list(task_space.names), actor_name, ACTOR_NAMESPACE))
    if state.checkpoint:
        algo.restore_from_path(str(Path(state.checkpoint) / "algorithm"))
    return actor, algo


def publish_cadence(cfg: ExperimentConfig) -> float:
    """Seconds between the CurriculumActor's recomputes: 0 when runs must be reproducible (a refresh
    waits for the runner's episodes and must see them), else the config's value or, unset, the
    runners' own refresh interval."""
    if cfg.curriculum.reproducible:
        return 0.0
    chosen = cfg.curriculum.publish_every_seconds
    return cfg.curriculum.refresh_every_seconds if chosen is None else chosen


def _save_checkpoint(algo, actor, run_path: Path, state: TrainerState) -> bool:
    """Checkpoint policy + curriculum + driver state as ``checkpoints/iter_N``; True if written.

    Everything is assembled in a hidden staging folder and renamed into place at the end, so
    a failed write (full disk, dead actor) leaves no half checkpoint and the previous one
    intact; the failure is reported and training goes on (the next checkpoint retries).
    """
    import ray

    from orchestrator.rl.algorithm import flush_curriculum_reports

    final = run_path / "checkpoints" / checkpoint_name(state.iteration)
    staging = staging_dir(final)
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        algo.save_to_path(str(staging / "algorithm"))
        flush_curriculum_reports(algo)
        ray.get(actor.save_checkpoint.remote(str(staging / "curriculum.pkl")))
        saved = replace(state, checkpoint=str(final))
        saved.save(staging / STATE_FILE)
        write_manifest(staging)
        # A directory rename is atomic and refuses a non-empty target: an existing checkpoint
        # of this iteration is never overwritten.
        os.rename(staging, final)
        saved.save(run_path / STATE_FILE)
    except Exception as exc:  # noqa: BLE001 - any failure leaves the previous checkpoint as the one to resume
        shutil.rmtree(staging, ignore_errors=True)
        console.print(f"[red]checkpoint {final.name} not written[/] ({type(exc).__name__}: {exc}); "
                      f"the previous checkpoint {state.checkpoint or '(none)'} is intact")
        return False
    state.checkpoint = str(final)
    try:
        with fail_fast_tracking():
            mlflow.set_tag("mto.checkpoint", str(final))
    except Exception as exc:  # noqa: BLE001 - the tracking server may be down; the folder is what resumes
        console.print(f"[yellow]could not tag the checkpoint in MLflow[/] ({type(exc).__name__})")
    for path in checkpoint_dirs(run_path)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(path, ignore_errors=True)
    return True


class _SigtermFlag:
    """While active, SIGTERM (`kill`, `ray job stop`, a Kubernetes pod stop) only sets ``received``;
    the loop finishes its iteration, checkpoints and stops. Only the main thread can own signals."""

    def __init__(self) -> None:
        self.received = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.received = True

    def __enter__(self) -> "_SigtermFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _last_logged_step(run_id: str | None) -> int:
    """The highest iteration this MLflow run already has metrics for (0 for a new run)."""
    if not run_id:
        return 0
    history = MlflowClient(mlflow.get_tracking_uri()).get_metric_history(run_id, "env_steps_total")
    return max((m.step for m in history), default=0)


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

    from orchestrator.rl.algorithm import iteration_metrics

    names = list(task_space.names)
    threshold = cfg.training.mastery_threshold
    budget = cfg.training.max_env_steps
    success: list[float] = [0.0] * len(names)
    measures_by_evaluation = cfg.curriculum.params.get("success_source", "online") == "evaluation"
    spool = MetricsSpool(run_path)
    if spool.waiting:  # kept during an outage before a crash: they go first, in order
        spool.send_waiting(timeout_s=30)
    # After a crash, iterations between the last checkpoint and the crash are trained again;
    # MLflow keeps the metrics they logged the first time, so their steps are not logged twice.
    logged_until = _last_logged_step(state.mlflow_run_id) if state.iteration else 0
    down_since: float | None = None  # since when no EnvRunner has sampled
    with _SigtermFlag() as sigterm, TrainingProgress(cfg.training.iterations, state.iteration, live) as progress:
        while (state.iteration < cfg.training.iterations and (budget is None or state.env_steps < budget)
               and not sigterm.received):
            t0 = time.perf_counter()
            if measures_by_evaluation and ray.get(actor.evaluation_due.remote()):
                _evaluate_for_curriculum(cfg, algo, actor, state)
            result = algo.train()
            seconds = time.perf_counter() - t0
            metrics = iteration_metrics(result)
            # RLlib's own count of finished episodes (lifetime, restored with the checkpoint): the
            # curriculum's per-task episode counts should add up to it (the fault matrix compares them).
            episodes = result.get("env_runners", {}).get("num_episodes_lifetime")
            if episodes is not None:
                metrics["episodes_completed_total"] = float(episodes)
            if metrics["env_steps"] == 0 and cfg.rl.num_env_runners > 0:
                # Every EnvRunner was down (RLlib has Ray restart them): nothing was sampled, so the
                # iteration does not count. A run whose EnvRunners do not come back stops.
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > NO_SAMPLES_TIMEOUT_S:
                    raise RuntimeError(f"no EnvRunner has sampled for {NO_SAMPLES_TIMEOUT_S:.0f} s (RLlib could not "
                                       f"restart them); the last checkpoint is {state.checkpoint}")
                console.print("[yellow]no EnvRunner sampled this iteration[/] (restarting); not counted")
                continue
            down_since = None
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
            if state.iteration > logged_until:
                spool.log(metrics, step=state.iteration)  # kept in the run folder while MLflow is down
            progress.update(state.iteration, state.env_steps, metrics["env_steps_per_second"], mean_success, mastered, len(names))
            if state.iteration % cfg.training.checkpoint_every == 0:
                _save_checkpoint(algo, actor, run_path, state)
            if state.iteration % cfg.training.plot_every == 0:
                _log_plots_safe(state.mlflow_run_id, names, threshold)
    final_written = state.checkpoint is not None and state.checkpoint.endswith(checkpoint_name(state.iteration))
    if not final_written:
        final_written = _save_checkpoint(algo, actor, run_path, state)
    # After a SIGTERM the process may have seconds left: what is not sent stays for --resume.
    if spool.waiting and not spool.send_waiting(timeout_s=0 if sigterm.received else 120):
        console.print(f"[red]tracking server still unreachable[/]: {spool.waiting} iterations' metrics stay in "
                      f"{spool.path}; `mto train --resume {state.mlflow_run_id}` sends them")
    if sigterm.received:
        message = (f"stopped by SIGTERM after iteration {state.iteration}; "
                   f"{'final checkpoint' if final_written else 'final checkpoint NOT written; last good one'} "
                   f"{state.checkpoint}; continue with: mto train --resume {state.mlflow_run_id}")
        console.print(message)
        try:
            with fail_fast_tracking():
                mlflow.end_run("KILLED")
        except Exception as exc:  # noqa: BLE001 - the checkpoint is written; the status is secondary
            console.print(f"[yellow]could not mark the MLflow run KILLED[/] ({type(exc).__name__})")
        raise TrainingInterrupted(message)
    if not final_written:
        raise RuntimeError(f"the final checkpoint was not written; the last good one is {state.checkpoint}")
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
    from orchestrator.rl.evaluate import best_success_per_task

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
    from orchestrator.config import config_for_tasks

    group_path = run_path / f"group_{g}"
    if (group_path / STATE_FILE).is_file():  # started before an interruption
        group_cfg = load_config(group_path / CONFIG_ARTIFACT)
        group_state = checked_resume_state(group_path, read_trainer_state(group_path, f"group {g}"), f"group {g}")
    else:
        group_cfg = config_for_tasks(cfg.to_dict(), group, f"groups[{g}]", name=f"{cfg.name}-group{g}", groups=None)
        group_path.mkdir(exist_ok=True)
        (group_path / CONFIG_ARTIFACT).write_text(yaml.safe_dump(redacted(group_cfg.to_dict()), sort_keys=False))
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
        return _train_one(group_cfg, task_space, group_path, group_state, live)


def _finished_group(cfg: ExperimentConfig, run_path: Path, state: TrainerState) -> TrainingSummary:
    """A group that finished before the parent was interrupted: its final numbers, from MLflow."""
    metrics = MlflowClient(mlflow.get_tracking_uri()).get_run(state.mlflow_run_id).data.metrics
    success = {n: metrics.get(f"success_rate/{n}", 0.0) for n in resolve_task_space(cfg).names}
    return _rl_summary(state, run_path, success, cfg.training.mastery_threshold, state.checkpoint)


def _evaluate_for_curriculum(cfg, algo, actor, state: TrainerState) -> None:
    """Evaluation-mode curricula measure success on fresh episodes of every task, run here
    with the learner's current policy, instead of on the curriculum-chosen training episodes."""
    import ray

    from orchestrator.rl.evaluate import evaluation_episodes

    outcomes = evaluation_episodes(
        algo.get_module(), cfg, cfg.curriculum.evaluation_episodes_per_task, greedy=False, seed=cfg.seed + state.iteration
    )
    # Numbered by iteration: a retry after the actor died before answering is not counted twice.
    ray.get(actor.report.remote(outcomes, f"evaluation-{state.iteration}", 1))


def _log_plots_safe(run_id: str | None, order, mastery_threshold: float) -> None:
    """Mid-run plots are a convenience: a full disk or an unreachable tracking server skips them
    (with a note) instead of ending the run; the final plots are drawn at the end."""
    try:
        with fail_fast_tracking():
            log_plots(run_id, order, mastery_threshold)
    except Exception as exc:  # noqa: BLE001
        console.print(f"[yellow]plots skipped this time[/] ({type(exc).__name__}: {str(exc)[:200]})")


def log_plots(run_id: str | None, order, mastery_threshold: float) -> None:
    """Draw the success curves and the distribution heatmap from the run's MLflow history."""
    import tempfile

    from orchestrator.runs.report import draw_curriculum_plots

    client = MlflowClient(mlflow.get_tracking_uri())
    with tempfile.TemporaryDirectory() as tmp:
        for path in draw_curriculum_plots(client, run_id, Path(tmp), order, mastery_threshold):
            mlflow.log_artifact(str(path), "plots")


def _print_final_table(names, success, threshold) -> None:
    rows = [(n, s, "yes" if s >= threshold else "") for n, s in zip(names, success)]
    console.print(task_table("Per-task success (curriculum's running estimate)", rows, ["task", "success_rate", "mastered"]))
    console.print(f"mastered {sum(s >= threshold for s in success)}/{len(names)} tasks (success >= {threshold})")
