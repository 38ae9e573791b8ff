"""MLflow: where runs are tracked, and reading them back."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.config import ConfigError, absolute_tracking_uri, sqlite_path, sqlite_uri
from orchestrator.runs.redaction import keep_mlflow_quiet_about, without_userinfo

RUN_PATH_TAG = "mto.run_path"
CONFIG_ARTIFACT = "config.yaml"


def default_tracking_uri(run_dir: str | Path) -> str:
    """SQLite under the run directory (MLflow refuses its old file store)."""
    return sqlite_uri(Path(run_dir).resolve() / "mlflow.db")


def resolve_tracking_uri(configured: str | None, run_dir: str | Path) -> str:
    """Config value, else `MLFLOW_TRACKING_URI`, else SQLite under `run_dir`.

    A relative SQLite path is made absolute here, on the driver: Ray workers run in their own
    working directory, where the same relative path would open (and create) another store.
    """
    return absolute_tracking_uri(configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(run_dir))


@contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store: MLflow creates and migrates its schema on first
    use without one, so two processes opening a fresh store race (`duplicate column name: step`)."""
    path = sqlite_path(tracking_uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_READY_STORES: set[str] = set()


def tracking_client(tracking_uri: str) -> MlflowClient:
    """A client whose store is ready: schema creation runs once, under the store lock."""
    if tracking_uri in _READY_STORES:
        return MlflowClient(tracking_uri)
    with _store_lock(tracking_uri):
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)  # first touch creates and migrates the schema
    _READY_STORES.add(tracking_uri)
    return client


def ensure_experiment(name: str, tracking_uri: str, run_dir: str | Path) -> str:
    """Experiment id for `name` (get or create; another process creating it first is fine), with
    artifacts under `run_dir` for local stores."""
    keep_mlflow_quiet_about(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    client = tracking_client(tracking_uri)
    with _store_lock(tracking_uri):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        artifact_location = None
        if sqlite_path(tracking_uri) is not None:
            artifact_location = (Path(run_dir).resolve() / "mlartifacts" / name).as_uri()
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:  # a tracking server has no lock we can take: the other process won
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise exc
            return exp.experiment_id


def search_runs_equal(client: MlflowClient, experiment_ids: list[str], key: str, value: str,
                      **kwargs: Any) -> list:
    """Runs whose ``key`` (e.g. ``attributes.run_name``, ``tags.`mto.trial_id```) equals ``value`` exactly.

    MLflow's filter grammar has no escapes, only a choice of quotes, so a value holding both
    quote kinds is searched with LIKE (each quote a wildcard) and matched exactly here.
    """
    if not experiment_ids:
        return []
    for quote in ("'", '"'):
        if quote not in value:
            return client.search_runs(experiment_ids, filter_string=f"{key} = {quote}{value}{quote}", **kwargs)
    max_results = kwargs.pop("max_results", None)
    pattern = value.replace("'", "_")
    candidates = client.search_runs(experiment_ids, filter_string=f"{key} LIKE '{pattern}'", **kwargs)
    exact = [r for r in candidates if _run_field(r, key) == value]
    return exact[:max_results] if max_results else exact


def _run_field(run, key: str) -> str | None:
    kind, _, name = key.partition(".")
    name = name.strip("`")
    if kind == "attributes" and name == "run_name":
        return run.info.run_name
    if kind == "tags":
        return run.data.tags.get(name)
    if kind == "params":
        return run.data.params.get(name)
    raise ValueError(f"search_runs_equal: unsupported key {key}")


def inherited_parent_run_id(client: MlflowClient | None = None) -> str | None:
    """Take ``MLFLOW_RUN_ID`` out of the environment (set by `mlflow run` and some schedulers).

    MLflow's ``start_run`` would otherwise reopen that unrelated run and write over it; we remove
    it so neither this process nor the Ray workers it starts can, and nest our new runs under it.
    With ``client``, checks that it is a run of that store (`ConfigError` if not).
    """
    inherited = os.environ.pop("MLFLOW_RUN_ID", None)
    if inherited:
        _INHERITED[:] = [inherited]
    parent = _INHERITED[0] if _INHERITED else None
    if parent and client is not None:
        try:
            client.get_run(parent)
        except MlflowException:
            raise ConfigError(
                f"MLFLOW_RUN_ID={parent} (inherited from the environment) is not a run at {without_userinfo(client.tracking_uri)}; "
                "unset it, or point MLFLOW_TRACKING_URI at the store that holds it") from None
    return parent


_INHERITED: list[str] = []


def start_new_run(client: MlflowClient, experiment_id: str, run_name: str, tags: dict[str, str]):
    """Start (as the active run) a new run, nested under an inherited ``MLFLOW_RUN_ID`` if one was set."""
    parent = inherited_parent_run_id(client)
    if parent:
        tags = {**tags, "mlflow.parentRunId": parent}
    return mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)


def log_metrics_safe(metrics: dict[str, float], step: int) -> None:
    """Log finite metrics in batches (MLflow caps a batch at 1000 entries)."""
    import math

    finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    items = list(finite.items())
    for start in range(0, len(items), 900):
        mlflow.log_metrics(dict(items[start : start + 900]), step=step)


def log_params_safe(params: dict[str, Any]) -> None:
    """Log a flattened config as params (values stringified without URI credentials, long ones cut to MLflow's limit)."""
    items = [(k, without_userinfo(str(v))[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 90):
        mlflow.log_params(dict(items[start : start + 90]))


def find_run(run: str, tracking_uri: str):
    """An MLflow run by id, or by run name (newest first). Raises LookupError."""
    client = tracking_client(tracking_uri)
    try:
        return client.get_run(run)
    except Exception:  # noqa: BLE001 - MLflow raises various types for a missing id
        pass
    # The client, not the fluent API: `mlflow.search_runs` reads the process-wide tracking URI,
    # which is not set yet when `--resume NAME` looks the run up (it then searched, and
    # created, ./mlflow.db in the working directory).
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = search_runs_equal(client, experiments, "attributes.run_name", run,
                             order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise LookupError(f"no MLflow run with id or name '{run}' at {without_userinfo(tracking_uri)}")
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
