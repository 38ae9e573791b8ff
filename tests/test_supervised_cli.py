"""Supervised multi-task runs through `mto train` / `mto report`: Ray Train underneath, MLflow on top."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.runs.tracking import default_tracking_uri

REPO = Path(__file__).resolve().parent.parent


def test_train_multi_digit_through_cli_logs_per_task_metrics(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(["train", str(REPO / "configs/multi_digit_pcgrad.yaml"), "--no-live", "--run-dir", str(tmp_path),
                 "--set", f"run_dir={tmp_path}", "--set", "supervised.epochs=2", "--set", "supervised.num_workers=1",
                 "--set", "task.dataset_params={num_train: 600, num_val: 200, num_test: 200}"])
    assert code == 0
    out = capsys.readouterr().out
    assert "left_digit" in out and "right_digit" in out
    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("mto").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["mto.kind"] == "supervised"
    for task in ("left_digit", "right_digit"):
        assert 0.0 <= run.data.metrics[f"test/accuracy/{task}"] <= 1.0
        steps = [m.step for m in client.get_metric_history(run.info.run_id, f"val/loss/{task}")]
        assert steps == [1, 2]
    assert int(run.data.params["parameters.shared"]) > 0
    assert "plots/val_loss.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert main(["report", run.info.run_id, "--run-dir", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    assert "test_accuracy" in capsys.readouterr().out
    assert (tmp_path / "rep" / "val_loss.png").stat().st_size > 1000


def test_supervised_config_errors_name_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "task": {"family": "multi_digit", "dataset": str(bad)},
                                   "model": {"architecture": "shared_bottom"}}))
    assert main(["check", str(cfg)]) == 2
    assert "task.dataset" in capsys.readouterr().err
    cfg.write_text(yaml.safe_dump({"name": "x", "task": {"family": "grouped_regression"}}))
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "model.architecture" in err and "shared_bottom" in err
    cfg.write_text(yaml.safe_dump({"name": "x", "task": {"family": "pareto_toy", "dataset_params": {"dims": 3}},
                                   "model": {"architecture": "shared_bottom"}}))
    assert main(["check", str(cfg)]) == 2
    assert "task.dataset_params" in capsys.readouterr().err
