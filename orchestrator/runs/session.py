"""Around every training job: the Ray connection and the MLflow run (new or resumed), ended
FINISHED or FAILED, with Ray shut down again if we started it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import yaml

from orchestrator.config import ExperimentConfig, flatten
from orchestrator.runs.progress import console
from orchestrator.runs.redaction import redacted, without_userinfo
from orchestrator.runs.run_folder import STATE_FILE, TrainerState, new_run_path
from orchestrator.runs.tracking import (
    CONFIG_ARTIFACT,
    RUN_PATH_TAG,
    ensure_experiment,
    inherited_parent_run_id,
    log_params_safe,
    start_new_run,
    tracking_client,
)


def connect_ray(address: str | None) -> bool:
    """Attach to a cluster (`--address`/`RAY_ADDRESS`) or start a local Ray. True if we connected."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    # Ray starts its workers at niceness 15 by default: an EnvRunner sampling beside the driver's
    # learner (rl.overlap_sampling) would lose its core to any other program. Our own local Ray
    # runs them at the driver's priority; a cluster keeps its own setting.
    local = {} if address else {"_system_config": {"worker_niceness": 0}}
    ray.init(address=address or None, logging_level=logging.WARNING, include_dashboard=False if not address else None,
             configure_logging=True, **local)
    return True


def run_tags(cfg: ExperimentConfig, run_path: Path) -> dict[str, str]:
    """The tags that let `mto eval/report/train --resume` find a run's folder and kind."""
    kind = "offline" if cfg.offline is not None else "supervised" if cfg.is_supervised else "rl"
    tags = {RUN_PATH_TAG: str(run_path), "mto.config_name": cfg.name, "mto.kind": kind}
    if cfg.offline is not None:
        tags["mto.sharing"] = cfg.offline.sharing
    return tags


@contextmanager
def training_run(cfg: ExperimentConfig, tracking_uri: str, run_path: Path | None, state: TrainerState,
                 address: str | None) -> Iterator[Path]:
    """Open (or reopen, when ``state`` names one) the MLflow run and connect Ray; yields the run folder.

    A new run gets its folder, its config file, its tags and params before anything trains. The
    product opens only the run it creates here or the one ``state`` names: an inherited
    ``MLFLOW_RUN_ID`` becomes the new run's parent (see `start_new_run`), never the run itself.
    """
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = ensure_experiment(cfg.tracking.experiment, tracking_uri, cfg.run_dir)
    # Out of the environment before anything (or any Ray worker) could reopen it; checked before a folder exists.
    inherited_parent_run_id(None if state.mlflow_run_id else tracking_client(tracking_uri))
    if run_path is None:
        run_path = new_run_path(cfg)
        # Without URI credentials: it becomes an MLflow artifact (a resume tracks where MLFLOW_TRACKING_URI says).
        (run_path / CONFIG_ARTIFACT).write_text(yaml.safe_dump(redacted(cfg.to_dict()), sort_keys=False))
    started_ray = connect_ray(address)
    active = None
    try:
        if state.mlflow_run_id:
            active = mlflow.start_run(run_id=state.mlflow_run_id)
        else:
            active = start_new_run(tracking_client(tracking_uri), experiment_id, cfg.tracking.run_name or run_path.name,
                                   run_tags(cfg, run_path))
            state.mlflow_run_id = active.info.run_id
            log_params_safe(flatten(cfg.to_dict()))
            mlflow.log_artifact(str(run_path / CONFIG_ARTIFACT))
            state.save(run_path / STATE_FILE)
        console.print(f"[bold]run[/] {run_path.name}  [bold]mlflow[/] {without_userinfo(tracking_uri)}  run_id={state.mlflow_run_id}")
        yield run_path
        mlflow.end_run("FINISHED")
    except BaseException:
        if active is not None:
            try:
                mlflow.end_run("FAILED")
            except Exception as exc:  # noqa: BLE001 - a tracking server that is down must not hide why the run ended
                console.print(f"[yellow]could not mark the MLflow run FAILED ({type(exc).__name__}: {exc})[/]")
        raise
    finally:
        if started_ray:
            import ray

            ray.shutdown()
