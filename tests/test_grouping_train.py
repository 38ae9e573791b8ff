"""`mto train` with `groups:` trains one network per group and reports each task from its best group."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_train_honours_groups(ray_session, tmp_path) -> None:
    from orchestrator.cli import run_training

    config = tmp_path / "groups.yaml"
    config.write_text(yaml.safe_dump({
        "name": "grouped", "run_dir": str(tmp_path / "runs"),
        "task": {"family": "grouped_regression", "dataset_params": {
            "num_groups": 2, "tasks_per_group": 2, "samples_per_task": 60, "val_per_task": 20, "test_per_task": 20}},
        "model": {"architecture": "shared_bottom", "hidden": [16]},
        "supervised": {"epochs": 2, "batch_size": 64, "num_workers": 1},
        "groups": [["task_00", "task_01", "task_02"], ["task_02", "task_03"]],
    }))
    summary = run_training(str(config), live=False)
    run = MlflowClient(summary.tracking_uri).get_run(summary.run_id)
    metrics = run.data.metrics
    assert "group_0/val/loss/task_01" in metrics and "group_1/val/loss/task_03" in metrics
    assert "group_1/val/loss/task_00" not in metrics  # task_00 is not in group 1's network
    # task_02 trains in both networks and is reported from the one with its lower validation loss.
    assert metrics["val/loss/task_02"] == pytest.approx(
        min(metrics["group_0/val/loss/task_02"], metrics["group_1/val/loss/task_02"]))
    assert metrics["val/loss_total"] == pytest.approx(sum(metrics[f"val/loss/task_0{i}"] for i in range(4)))
