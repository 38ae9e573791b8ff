"""A password in the tracking URI appears in no MLflow param, no artifact, no run-folder file and no
output line (issue 28): the run talks to a real `mlflow server` through
``http://alice:s3cr3t@127.0.0.1:PORT`` and everything the server stored is searched for it."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlflow_fixtures import mlflow_binary, wait_for_mlflow_server
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.runs.redaction import redacted, without_userinfo
from orchestrator.runs.run_folder import TrainerState
from orchestrator.runs.session import training_run

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cr3t-Pa55"


def test_without_userinfo_known_answers():
    assert without_userinfo(f"https://alice:{PASSWORD}@host:5000/p?q=a@b") == "https://host:5000/p?q=a@b"
    assert without_userinfo("postgresql://mlflow:pw@db:5432/mlflow") == "postgresql://db:5432/mlflow"
    assert without_userinfo("sqlite:////tmp/runs/mlflow.db") == "sqlite:////tmp/runs/mlflow.db"
    assert without_userinfo("in http://u:p@h and s3://k:s@bucket/x") == "in http://h and s3://bucket/x"
    assert redacted({"a": ["http://u:p@h"], "b": 1, "c": None}) == {"a": ["http://h"], "b": 1, "c": None}


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on loopback (SQLite, artifacts proxied into tmp); its folder."""
    store = tmp_path / "server"
    store.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(mlflow_binary()), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                             "--artifacts-destination", str(store / "artifacts")],
                            cwd=store, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_mlflow_server(proc, port, timeout_s=120)
        yield port, store
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # its workers can take long to stop on a loaded machine
            proc.kill()
            proc.wait(timeout=30)


def test_a_password_in_the_tracking_uri_is_logged_nowhere(ray_session, mlflow_server, tmp_path, capfd, monkeypatch):
    port, store = mlflow_server
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{port}"
    run_dir = tmp_path / "runs"
    cfg = load_config(REPO / "configs" / "smoke.yaml",
                      (f"tracking.tracking_uri={uri}", f"run_dir={run_dir}", "tune.storage_path=s3://key:" + PASSWORD + "@b/t"))
    assert cfg.tracking.tracking_uri == uri  # the run itself keeps what it was given
    # The run turns off MLflow's "View run at <URI>" line (it holds the password); undone after the test.
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)

    state = TrainerState()
    with training_run(cfg, uri, None, state, address=None) as run_path:
        print(f"inside the run: {run_path}")  # the context opened the run, logged params and the config artifact

    out, err = capfd.readouterr()
    assert f"http://127.0.0.1:{port}" in out  # the console still says where the run is tracked
    client = MlflowClient(uri)
    run = client.get_run(state.mlflow_run_id)
    assert run.data.params["tracking.tracking_uri"] == f"http://127.0.0.1:{port}"
    assert run.data.params["tune.storage_path"] == "s3://b/t"
    artifact = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "download")))
    assert f"127.0.0.1:{port}" in artifact.read_text()
    # Nowhere: output lines, params, tags, the artifact, the run folder, every byte the server stored.
    assert PASSWORD not in out + err
    assert not [k for k, v in {**run.data.params, **run.data.tags}.items() if PASSWORD in v]
    stored = [p for root in (store, run_path, artifact.parent) for p in Path(root).rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in stored) and any(p.name == "config.yaml" for p in stored)
    assert not [p for p in stored if PASSWORD.encode() in p.read_bytes()]


def test_a_password_in_the_tracking_uri_is_not_in_an_error(mlflow_server, tmp_path, capfd, monkeypatch):
    port, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{PASSWORD}@127.0.0.1:{port}")
    assert main(["eval", "no-such-run", "--run-dir", str(tmp_path)]) == 2
    out, err = capfd.readouterr()
    assert f"no MLflow run with id or name 'no-such-run' at http://127.0.0.1:{port}" in err
    assert PASSWORD not in out + err
