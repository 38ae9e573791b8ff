"""Shared fixtures. Ray is started at most once per test session and always stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Ray 2.59+ may turn on token auth for local clusters; tests run an unauthenticated
# loopback cluster on purpose, so say so explicitly.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, no dashboard)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
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
