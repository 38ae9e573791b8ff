"""A real Ray head on loopback, `ray job submit --working-dir .` of the smoke config,
SUCCEEDED, per-task metrics in MLflow, head stopped.

Waits are on conditions, with generous stated limits (the suite shares two cores with whatever
else runs on a developer's machine): the head's dashboard 300 s, its job agent 300 s (as the
fault matrix's `ray job stop` case), the smoke job 900 s.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


HEAD_START_S = 300  # `ray start --head` until its dashboard answers
AGENT_START_S = 300  # until the head's dashboard agent accepts a job (fault_matrix: the same)
JOB_S = 900  # the smoke job, submitted until it has ended


def _free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports the kernel has just handed out. All sockets are held until every
    port is chosen, so no two are the same; they are free when returned (another process could still
    take one before Ray binds it: the kernel hands ephemeral ports out in a random order, which makes
    that unlikely)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture()
def ray_head():
    """A Ray head of our own, stopped without touching any other Ray on the machine.

    `ray stop` would kill every Ray process here (the test session's own cluster
    included), so the head runs with `--block` in its own process group and is
    stopped by signalling that group.
    """
    # Short temp dir: Ray's unix sockets live under it and paths are length-limited.
    temp_dir = tempfile.mkdtemp(prefix="mto-ray-", dir="/tmp")
    # Token auth and loopback come from the suite's environment (tests/conftest.py).
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    # Every port of its own: the test session's Ray already holds the defaults (e.g. the
    # dashboard agent's 52365), and a head whose agent cannot bind refuses job submissions.
    flags = ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
             "--metrics-export-port", "--ray-client-server-port", "--node-manager-port", "--object-manager-port")
    gcs_port, dash_port, *ports = _free_ports(2 + len(flags))
    own_ports = {flag: str(port) for flag, port in zip(flags, ports)}
    start = [
        str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash_port), "--num-cpus", "2",
        "--temp-dir", temp_dir, "--disable-usage-stats", *[x for kv in own_ports.items() for x in kv],
    ]
    head = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash_port}"
    try:
        _wait_for_dashboard(address, head)
        yield address, env, int(own_ports["--dashboard-agent-listen-port"])
    finally:
        _stop_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _token() -> str:
    """The suite's Ray token (tests/conftest.py), as Ray's clients load it."""
    from ray._raylet import AuthenticationTokenLoader

    return AuthenticationTokenLoader.instance().get_raw_token(ignore_auth_mode=True)


def _wait_for_dashboard(address: str, head: subprocess.Popen, timeout: float = HEAD_START_S) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {head.returncode}")
        try:
            request = urllib.request.Request(f"{address}/api/version", headers={"Authorization": f"Bearer {_token()}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"the Ray dashboard at {address} did not come up in {timeout:.0f} s")


def _wait_until_ended(address: str, job_id: str, timeout: float) -> str:
    """The job's final status (SUCCEEDED, FAILED, STOPPED), or "" if it has not ended in ``timeout`` s."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)  # the token from the suite's environment, as the CLI's
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return status.value
        time.sleep(3)
    return ""


def _job_exists(address: str, job_id: str) -> bool:
    from ray.job_submission import JobSubmissionClient

    try:
        JobSubmissionClient(address).get_job_info(job_id)
        return True
    except RuntimeError:  # the SDK's "job not found" (HTTP 404)
        return False


def _stop_group(head: subprocess.Popen) -> None:
    import signal

    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_ray_job_submit_trains_smoke_and_tracks_in_mlflow(ray_head, tmp_path):
    address, env, _ = ray_head
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    job_id = f"mto-smoke-{uuid.uuid4().hex[:8]}"
    runtime_env = '{"env_vars": {"MLFLOW_TRACKING_URI": "%s"}}' % uri
    submit = [
        str(BIN / "ray"), "job", "submit", "--address", address, "--submission-id", job_id, "--no-wait",
        "--working-dir", ".", "--runtime-env-json", runtime_env, "--",
        "mto", "train", "configs/smoke.yaml", "--no-live", "--set", f"run_dir={store / 'runs'}",
    ]
    # The dashboard answers before its job agent is ready; a submit refused that early is retried
    # until the agent has had AGENT_START_S.
    errors = []
    deadline = time.time() + AGENT_START_S
    while True:
        proc = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=AGENT_START_S)
        if proc.returncode == 0 or _job_exists(address, job_id):
            break  # a submit that errored after registering the job must not submit it twice
        errors.append(proc.stderr[-3000:])
        if time.time() > deadline:
            pytest.fail(f"ray job submit was refused for {AGENT_START_S} s ({len(errors)} tries); first error:\n"
                        + errors[0] + "\nlast error:\n" + errors[-1])
        time.sleep(3)
    status = _wait_until_ended(address, job_id, JOB_S)
    logs = subprocess.run([str(BIN / "ray"), "job", "logs", "--address", address, job_id],
                          env=env, capture_output=True, text=True, timeout=300).stdout
    assert status == "SUCCEEDED", f"job ended as {status or 'still running'}; logs:\n{logs[-4000:]}"
    assert "Per-task success" in logs
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mto")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    for task in ("log", "planks", "stick", "dirt"):
        assert f"success_rate/{task}" in run.data.metrics
        assert f"probability/{task}" in run.data.metrics


def _post_job(url: str, marker: Path, token: str | None) -> int:
    """POST a job that would `touch marker` (the ShadowRay request); the HTTP status."""
    import json
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    body = json.dumps({"entrypoint": f"touch {marker}", "submission_id": f"post-{uuid.uuid4().hex[:8]}"}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_head_refuses_unauthenticated_job_submissions(ray_head, tmp_path):
    """The dashboard agent's and the dashboard's job endpoints answer 401 without the token, and
    run the command with it (so the 401 is the token check, not a missing endpoint)."""
    address, _, agent_port = ray_head
    agent = f"http://127.0.0.1:{agent_port}/api/job_agent/jobs/"
    refused, ran = tmp_path / "refused", tmp_path / "ran"
    deadline = time.time() + AGENT_START_S
    while True:  # the agent starts after the dashboard answers
        try:
            status = _post_job(agent, refused, token=None)
            break
        except OSError:
            assert time.time() < deadline, f"the dashboard agent at {agent} never answered"
            time.sleep(2)
    assert status == 401
    assert _post_job(f"{address}/api/jobs/", refused, token=None) == 401

    assert _post_job(agent, ran, token=_token()) == 200
    deadline = time.time() + JOB_S  # a job's driver start: seconds when idle, minutes on busy cores
    while not ran.exists() and time.time() < deadline:
        time.sleep(1)
    assert ran.exists(), "the authenticated job never ran: the endpoint check above proves nothing"
    assert not refused.exists()
