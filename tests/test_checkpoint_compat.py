"""A run checkpointed by the flat `orchestrator/` (before the subpackages) resumes and evaluates now.

The fixture `tests/fixtures/checkpoint_before_subpackages` is the run folder `mto train
configs/smoke.yaml --set model.architecture=shared_bottom` wrote at commit c84b865 (2 iterations,
1,038 env steps): its RLlib checkpoint pickles `orchestrator.rl_multitask.MultiTaskPPOLearner`
and `...MultiTaskPPOModule` under their old module path.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import mlflow
import pytest

from checkpoint_state import assert_learner_equals_checkpoint, capture_resumed_learner
from mlflow_fixtures import CHECKPOINT_FIXTURE, FIXTURE_CHECKPOINT, register_fixture_run
from orchestrator.cli import main
from orchestrator.runs.run_folder import STATE_FILE, TrainerState
from orchestrator.runs.tracking import default_tracking_uri


def test_fixture_names_the_old_module_paths():
    pickled = (CHECKPOINT_FIXTURE / "checkpoints" / FIXTURE_CHECKPOINT / "algorithm" / "class_and_ctor_args.pkl").read_bytes()
    assert b"orchestrator.rl_multitask" in pickled  # otherwise this file tests nothing


def test_old_module_paths_resolve_to_the_moved_modules():
    import importlib

    from orchestrator.runs.moved_modules import MOVED_MODULES

    for old, new in MOVED_MODULES.items():
        assert importlib.import_module(old) is importlib.import_module(new)
    import orchestrator.rl

    assert orchestrator.rl.make_simon_says_env is importlib.import_module("orchestrator.rl.algorithm").make_simon_says_env


@pytest.fixture
def legacy_run(tmp_path, monkeypatch):
    """The fixture run folder placed in a fresh run dir, registered in a fresh MLflow store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "runs"
    client, run_id, _ = register_fixture_run(run_dir, "legacy-fixture")
    mlflow.set_tracking_uri(default_tracking_uri(run_dir))
    return run_dir, run_dir / "legacy-fixture", client, run_id


def test_checkpoint_from_before_the_move_resumes(ray_session, legacy_run, monkeypatch):
    run_dir, run_path, client, run_id = legacy_run
    before = TrainerState.load(run_path / STATE_FILE)
    with open(Path(before.checkpoint) / "curriculum.pkl", "rb") as f:
        saved_episodes = float(pickle.load(f)["state"]["episodes"].sum())
    assert (before.iteration, before.env_steps) == (2, 1038)
    resumed_learner = capture_resumed_learner(monkeypatch)

    code = main(["train", "--resume", run_id, "--run-dir", str(run_dir), "--no-live", "--set", "training.iterations=3"])

    assert code == 0
    (resumed,) = resumed_learner  # the old checkpoint's weights and Adam state, exactly
    assert assert_learner_equals_checkpoint(resumed, before.checkpoint) > 10
    after = TrainerState.load(run_path / STATE_FILE)
    assert after.iteration == 3
    assert after.env_steps > before.env_steps
    assert after.checkpoint.endswith("iter_000003")
    assert [m.step for m in client.get_metric_history(run_id, "env_steps_total")] == [3]
    with open(Path(after.checkpoint) / "curriculum.pkl", "rb") as f:
        assert float(pickle.load(f)["state"]["episodes"].sum()) > saved_episodes
    assert client.get_run(run_id).info.status == "FINISHED"


def test_checkpoint_from_before_the_move_evaluates(ray_session, legacy_run, capsys):
    run_dir, run_path, _, run_id = legacy_run
    code = main(["eval", run_id, "--run-dir", str(run_dir), "--episodes", "2"])
    assert code == 0
    out = capsys.readouterr().out
    for task in ("log", "planks", "stick", "dirt"):
        assert task in out
