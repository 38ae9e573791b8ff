"""The suite's own Ray is authenticated and on loopback (issue 28): token mode with a token Ray
generated, no dashboard agent HTTP server, every socket Ray listens on bound to 127.0.0.1, and a
client without the token is refused. `tests/test_ray_job_submit.py` posts a job to a head's
dashboard agent without the token and gets 401."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.runs.local_ray import AUTH_MODE, TOKEN, TOKEN_PATH

REPO = Path(__file__).resolve().parents[1]


def _ray_processes(ray):
    """This session's Ray processes: the raylet's and GCS's, their children, and this driver."""
    import psutil  # shipped inside Ray (ray/thirdparty_files)

    node = ray._private.worker.global_worker.node
    pids = {node.all_processes[kind][0].process.pid for kind in ("gcs_server", "raylet") if kind in node.all_processes}
    procs = [psutil.Process(pid) for pid in pids]
    return [p for root in procs for p in (root, *root.children(recursive=True))] + [psutil.Process()]


def test_the_session_ray_uses_a_generated_token(ray_session):
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert os.environ[AUTH_MODE] == "token" and is_token_auth_enabled()
    token = Path(os.environ[TOKEN_PATH]).read_text() if TOKEN_PATH in os.environ else os.environ[TOKEN]
    assert len(token) >= 32 and token not in ("", "disabled")
    if TOKEN_PATH in os.environ:
        assert Path(os.environ[TOKEN_PATH]).stat().st_mode & 0o077 == 0, "the token file is readable by others"


def _listening(ray) -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every socket this session's Ray listens on."""
    found = [(p.name(), c.laddr.ip, c.laddr.port) for p in _ray_processes(ray)
             for c in p.net_connections(kind="inet") if c.status == "LISTEN"]
    assert found, "found no listening Ray sockets: the checks would pass vacuously"
    return found


def test_the_session_ray_listens_on_loopback_only(ray_session):
    assert ray_session.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
    wide = [s for s in _listening(ray_session) if s[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert not wide, f"Ray listens beyond loopback: {wide}"


def test_the_session_ray_refuses_an_unauthenticated_job_submission_to_its_agent(ray_session, tmp_path):
    """The ShadowRay request: a POST to the dashboard agent's job endpoint that would run a shell command."""
    import urllib.error
    import urllib.request

    port = ray_session.nodes()[0]["DashboardAgentListenPort"]
    marker = tmp_path / "RAN"
    body = json.dumps({"entrypoint": f"touch {marker}", "submission_id": "unauthenticated"}).encode()
    if port in [p for _, _, p in _listening(ray_session)]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/job_agent/jobs/", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 401
    else:
        # Its agent serves no HTTP here (another Ray on this machine holds Ray's fixed agent port, or the
        # agent runs without it): nothing of this cluster answers on that port, on any address.
        assert not [s for s in _listening(ray_session) if s[2] == port]
    time.sleep(2)
    assert not marker.exists()


def test_a_client_without_the_token_is_refused(ray_session):
    """A driver with auth disabled and no token (as an attacker's would be) cannot attach to the GCS."""
    gcs = ray_session.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN, TOKEN_PATH, "RAY_ADDRESS")}
    env.update({AUTH_MODE: "disabled", "HOME": "/nonexistent"})  # no ~/.ray/auth_token either
    code = ("import ray\n"
            f"ray.init(address={gcs!r}, logging_level='ERROR')\n"
            "print('ATTACHED', ray.cluster_resources())\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert "ATTACHED" not in proc.stdout and proc.returncode != 0, proc.stdout[-2000:]
    assert "auth" in (proc.stdout + proc.stderr).lower(), proc.stderr[-3000:]
