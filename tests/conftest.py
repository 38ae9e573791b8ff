"""Shared fixtures. Ray is started at most once per test session and always stopped."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from orchestrator.runs.local_ray import secure_local_ray

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parent.parent

# Every Ray the suite starts (here, in `ray start`, in `mto` subprocesses) authenticates with a token
# Ray generates for this session, kept owner-only outside the home directory and removed at exit,
# and listens on 127.0.0.1 only. Set before anything starts Ray; subprocesses inherit it.
# The suite's Rays also keep their files in a temp dir of the session's own (short: Ray's unix
# sockets live under it): a plain ray.init() attaches to the cluster recorded in
# <temp dir>/ray/ray_current_cluster, and in the shared /tmp/ray that is whatever `ray start` anyone
# on this machine ran last.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mto-test-", dir="/tmp"))
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
os.environ.setdefault("RAY_TMPDIR", str(_SESSION_DIR))
secure_local_ray(_SESSION_DIR / "auth_token")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, no dashboard; token auth, loopback only)."""
    import ray

    if not ray.is_initialized():
        # address="local": a new cluster, never one that RAY_ADDRESS or a `ray start` names.
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _tracking_uri_does_not_leak_between_tests():
    """`mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI (for subprocesses), which
    `mto` reads as the user's choice of store: without this, the store of one test's run would
    become the default store of every later test in the session."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") != before:
        import mlflow

        mlflow.set_tracking_uri(before)
