"""MLflow pieces several tests share: a checked-in run folder registered as a run, a real server's binary and
its readiness."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

from orchestrator.runs.run_folder import STATE_FILE
from orchestrator.runs.tracking import RUN_PATH_TAG, default_tracking_uri, ensure_experiment

# A run folder written before the subpackages (`orchestrator.train` era), with its checkpoint.
CHECKPOINT_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "checkpoint_before_subpackages"
FIXTURE_CHECKPOINT = "iter_000002"


def register_fixture_run(run_dir: Path, name: str) -> tuple[MlflowClient, str, Path]:
    """Copy the fixture run folder to ``run_dir/name`` and register it as a KILLED run in ``run_dir``'s
    default MLflow store, its state files pointing at the copy's checkpoint; (client, run id, checkpoint)."""
    run_path = run_dir / name
    shutil.copytree(CHECKPOINT_FIXTURE, run_path)
    uri = default_tracking_uri(run_dir)
    client = MlflowClient(uri)
    run = client.create_run(ensure_experiment("mto", uri, run_dir), run_name=name,
                            tags={RUN_PATH_TAG: str(run_path), "mto.kind": "rl", "mto.config_name": name})
    checkpoint = run_path / "checkpoints" / FIXTURE_CHECKPOINT
    for state_file in (run_path / STATE_FILE, checkpoint / STATE_FILE):
        state = json.loads(state_file.read_text())
        state.update(checkpoint=str(checkpoint), mlflow_run_id=run.info.run_id)
        state_file.write_text(json.dumps(state))
    client.set_terminated(run.info.run_id, "KILLED")
    return client, run.info.run_id, checkpoint


def mlflow_binary() -> Path:
    """The mlflow next to this interpreter (the version pinned in pyproject.toml), else the one on PATH."""
    here = Path(sys.executable).with_name("mlflow")
    return here if here.exists() else Path(shutil.which("mlflow") or "mlflow")


def wait_for_mlflow_server(proc: subprocess.Popen, port: int, timeout_s: float) -> None:
    """Until the server on loopback ``port`` answers its health check (fails if it exits or times out)."""
    deadline = time.time() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "mlflow server did not start"
            time.sleep(0.5)
