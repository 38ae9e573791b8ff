"""End to end through the CLI: train the smoke config on a real local Ray, track in MLflow,
resume from the checkpoint, evaluate the checkpoint, report the run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from checkpoint_state import assert_learner_equals_checkpoint, capture_resumed_learner
from orchestrator.cli import main
from orchestrator.runs.tracking import default_tracking_uri
from orchestrator.runs.run_folder import STATE_FILE, TrainerState

REPO = Path(__file__).resolve().parent.parent
SMOKE_TASKS = ["log", "planks", "stick", "dirt"]


@pytest.fixture(scope="module")
def smoke_run(ray_session, tmp_path_factory, monkeypatch_module):
    run_dir = tmp_path_factory.mktemp("runs")
    monkeypatch_module.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(["train", str(REPO / "configs/smoke.yaml"), "--no-live", "--run-dir", str(run_dir),
                 "--set", f"run_dir={run_dir}"])
    assert code == 0
    client = MlflowClient(default_tracking_uri(run_dir))
    exp = client.get_experiment_by_name("mto")
    (run,) = client.search_runs([exp.experiment_id])
    return run_dir, client, run


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_train_logs_per_task_metrics_plots_and_checkpoint(smoke_run):
    run_dir, client, run = smoke_run
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for task in SMOKE_TASKS:
        assert f"success_rate/{task}" in metrics
        assert f"probability/{task}" in metrics
        assert f"learning_progress/{task}" in metrics
    # The distribution is a distribution.
    assert sum(metrics[f"probability/{t}"] for t in SMOKE_TASKS) == pytest.approx(1.0, abs=1e-6)
    assert metrics["env_steps_total"] >= 2 * 512
    assert metrics["env_steps_per_second"] > 0
    history = client.get_metric_history(run.info.run_id, "env_steps_total")
    assert [m.step for m in history] == [1, 2]
    # What the bonus does reaches MLflow every iteration: items paying, its share of the return.
    for name in ("bonus/paying_items", "bonus/share_of_return", "bonus/return_per_episode"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2], name
    bonus, env_return = metrics["bonus/return_per_episode"], metrics["bonus/env_return_per_episode"]
    assert bonus > 0  # the random early policy obtains logs and planks, which pay while unreliable
    assert metrics["bonus/share_of_return"] == pytest.approx(bonus / (bonus + env_return))
    assert 0 <= metrics["bonus/paying_items"] <= len(SMOKE_TASKS)  # items=tasks: only task items pay
    assert run.data.params["bonus.count_milestones"] == "True" and run.data.params["bonus.items"] == "tasks"
    assert run.data.params["rl.train_batch_size"] == "512"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/success_rate.png", "plots/curriculum_distribution.png"} <= plots
    run_path = Path(run.data.tags["mto.run_path"])
    state = TrainerState.load(run_path / STATE_FILE)
    assert state.iteration == 2 and state.checkpoint
    assert (Path(state.checkpoint) / "curriculum.pkl").is_file()


def test_resume_continues_steps_and_curriculum_state(smoke_run, ray_session, monkeypatch):
    run_dir, client, run = smoke_run
    run_path = Path(run.data.tags["mto.run_path"])
    before = TrainerState.load(run_path / STATE_FILE)
    import pickle

    with open(Path(before.checkpoint) / "curriculum.pkl", "rb") as f:
        saved = pickle.load(f)
    # Kept aside: the resumed run's checkpoint retention removes this checkpoint before we compare.
    kept = Path(run_dir) / "resumed_from"
    shutil.copytree(before.checkpoint, kept)
    resumed_learner = capture_resumed_learner(monkeypatch)
    # Two more iterations: 64 steps per env, past the smoke horizon (50), so every env finishes an
    # episode after the resume (with one iteration, 32 steps, none might, and the count below stood still).
    code = main(["train", "--resume", run.info.run_id, "--run-dir", str(run_dir), "--no-live",
                 "--set", "training.iterations=4"])
    assert code == 0
    # The policy and its optimizer continue from the checkpoint, tensor by tensor, not from a
    # fresh initialisation (driver-side counters alone cannot tell the two apart).
    (resumed,) = resumed_learner
    assert assert_learner_equals_checkpoint(resumed, kept) > 10
    after = TrainerState.load(run_path / STATE_FILE)
    assert after.iteration == 4
    assert after.env_steps > before.env_steps
    assert after.mlflow_run_id == run.info.run_id  # same MLflow run, continued
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "env_steps_total")]
    assert steps == [1, 2, 3, 4]
    values = [m.value for m in client.get_metric_history(run.info.run_id, "env_steps_total")]
    assert values[3] > values[2] > values[1] > values[0]
    # The curriculum continued from its checkpoint: the new checkpoint holds the saved
    # episodes plus the ones sampled since (EnvRunners flush their outcomes first).
    with open(Path(after.checkpoint) / "curriculum.pkl", "rb") as f:
        resumed = pickle.load(f)
    saved_episodes = _episodes_in_state(saved)
    assert saved_episodes > 0
    assert _episodes_in_state(resumed) > saved_episodes
    assert after.checkpoint != before.checkpoint


def _episodes_in_state(checkpoint: dict) -> float:
    """Total training episodes recorded in a curriculum checkpoint file's payload."""
    return float(checkpoint["state"]["episodes"].sum())


def test_eval_prints_per_task_table(smoke_run, capsys):
    run_dir, client, run = smoke_run
    code = main(["eval", run.info.run_id, "--run-dir", str(run_dir), "--episodes", "3"])
    assert code == 0
    out = capsys.readouterr().out
    for task in SMOKE_TASKS:
        assert task in out
    assert "mean success" in out


def test_report_reads_run_back_and_draws_plots(smoke_run, tmp_path, capsys):
    run_dir, client, run = smoke_run
    code = main(["report", run.info.run_name, "--run-dir", str(run_dir), "--out", str(tmp_path / "rep")])
    assert code == 0
    out = capsys.readouterr().out
    assert all(t in out for t in SMOKE_TASKS)
    assert (tmp_path / "rep" / "success_rate.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "curriculum_distribution.png").stat().st_size > 1000


def test_unknown_run_is_a_usage_error(tmp_path, capsys):
    assert main(["report", "no-such-run", "--run-dir", str(tmp_path)]) == 2
    assert "no-such-run" in capsys.readouterr().err
    assert main(["train", "--resume", "no-such-run", "--run-dir", str(tmp_path)]) == 2


def test_groups_train_one_ppo_run_per_group_nested_under_the_parent(ray_session, tmp_path, monkeypatch, capsys):
    """`groups:` (as written by `mto tune-groups`) on Simon Says: one network + curriculum per
    group, each a nested MLflow run with its own checkpoint; the parent reports every task from
    the group that serves it best."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    groups = [["log", "planks"], ["planks", "stick", "dirt"]]
    code = main(["train", str(REPO / "configs/smoke.yaml"), "--no-live", "--run-dir", str(tmp_path),
                 "--set", f"run_dir={tmp_path}", "--set", "training.iterations=1",
                 "--set", "model.architecture=shared_bottom", "--set", f"groups={json.dumps(groups)}"])
    assert code == 0
    client = MlflowClient(default_tracking_uri(tmp_path))
    runs = client.search_runs([client.get_experiment_by_name("mto").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: int(r.data.tags["mto.group"]))
    assert parent.info.status == "FINISHED" and len(children) == 2 == len(runs) - 1
    child_success = []
    for child, group in zip(children, groups):
        assert child.info.status == "FINISHED"
        assert sorted(k.split("/", 1)[1] for k in child.data.metrics if k.startswith("success_rate/")) == sorted(group)
        checkpoint = Path(child.data.tags["mto.checkpoint"])
        assert (checkpoint / "curriculum.pkl").is_file()
        assert parent.data.tags[f"mto.checkpoint.group_{child.data.tags['mto.group']}"] == str(checkpoint)
        child_success.append({t: child.data.metrics[f"success_rate/{t}"] for t in group})
    for task in SMOKE_TASKS:
        expected = max(s[task] for s in child_success if task in s)
        assert parent.data.metrics[f"success_rate/{task}"] == pytest.approx(expected)
    # A group's run is an ordinary run: `mto eval` loads its checkpoint by run id.
    capsys.readouterr()
    assert main(["eval", children[1].info.run_id, "--run-dir", str(tmp_path), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "stick" in out and "log" not in out.split("Evaluation", 1)[1]
    # The parent holds no network of its own: eval names the groups' runs instead.
    assert main(["eval", parent.info.run_name, "--run-dir", str(tmp_path)]) == 2
    assert f"{parent.info.run_name}-group0, {parent.info.run_name}-group1" in capsys.readouterr().err
    # Resuming the finished parent (by name) trains nothing again and reports the same numbers.
    assert main(["train", "--resume", parent.info.run_name, "--run-dir", str(tmp_path), "--no-live"]) == 0
    again = client.get_run(parent.info.run_id)
    assert again.data.metrics == parent.data.metrics
    for child in children:
        assert len(client.get_metric_history(child.info.run_id, "env_steps_total")) == 1
    # A fresh process finds the run by name in the given store and writes nothing where it stands.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    found = subprocess.run(
        [sys.executable, "-c", "import sys; from orchestrator.runs.tracking import find_run; "
         "print(find_run(sys.argv[1], sys.argv[2]).info.run_id)", parent.info.run_name, default_tracking_uri(tmp_path)],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert found.stdout.strip().splitlines()[-1] == parent.info.run_id
    assert list(elsewhere.iterdir()) == []
