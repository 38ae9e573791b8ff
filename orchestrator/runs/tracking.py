"""MLflow: where runs are tracked, and reading them back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

RUN_PATH_TAG = "mto.run_path"
CONFIG_ARTIFACT = "config.yaml"


def default_tracking_uri(run_dir: str | Path) -> str:
    """SQLite under the run directory (MLflow refuses its old file store)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None, run_dir: str | Path) -> str:
    """Config value, else `MLFLOW_TRACKING_URI`, else SQLite under `run_dir`."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(run_dir)


def ensure_experiment(name: str, tracking_uri: str, run_dir: str | Path) -> str:
    """Experiment id for `name`, created with artifacts under `run_dir` for local stores."""
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:"):
        artifact_location = (Path(run_dir).resolve() / "mlartifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def log_metrics_safe(metrics: dict[str, float], step: int) -> None:
    """Log finite metrics in batches (MLflow caps a batch at 1000 entries)."""
    import math

    finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    items = list(finite.items())
    for start in range(0, len(items), 900):
        mlflow.log_metrics(dict(items[start : start + 900]), step=step)


def log_params_safe(params: dict[str, Any]) -> None:
    """Log a flattened config as params (values stringified, long ones cut to MLflow's limit)."""
    items = [(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 90):
        mlflow.log_params(dict(items[start : start + 90]))


def find_run(run: str, tracking_uri: str):
    """An MLflow run by id, or by run name (newest first). Raises LookupError."""
    client = MlflowClient(tracking_uri)
    try:
        return client.get_run(run)
    except Exception:  # noqa: BLE001 - MLflow raises various types for a missing id
        pass
    # The client, not the fluent API: `mlflow.search_runs` reads the process-wide tracking URI,
    # which is not set yet when `--resume NAME` looks the run up (it then searched, and
    # created, ./mlflow.db in the working directory).
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, filter_string=f"attributes.run_name = '{run}'", order_by=["attributes.start_time DESC"],
        max_results=1,
    ) if experiments else []
    if not runs:
        raise LookupError(f"no MLflow run with id or name '{run}' at {tracking_uri}")
    return runs[0]


def metric_histories(client: MlflowClient, run_id: str, prefix: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run starting with `prefix/`, as {suffix: [(step, value), ...]}."""
    run = client.get_run(run_id)
    out: dict[str, list[tuple[int, float]]] = {}
    for key in run.data.metrics:
        if key.startswith(prefix + "/"):
            hist = client.get_metric_history(run_id, key)
            out[key[len(prefix) + 1 :]] = sorted((m.step, m.value) for m in hist)
    return out
