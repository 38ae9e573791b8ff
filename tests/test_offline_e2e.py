"""End to end on a local Ray: `mto collect` writes a dataset, `mto train` with cds trains CQL on it
and logs per-task success and the sharing heatmap to MLflow; `mto train --resume` continues it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from tasks.simon_says.transitions import DatasetCard, read_transitions

TASKS = ["log", "planks", "stick", "crafting_table", "wooden_pickaxe", "cobblestone"]


def _overrides(tmp_path) -> list[str]:
    behaviour = ('[{policy: scripted, skill: 0.9, tasks: [wooden_pickaxe, cobblestone], transitions: 600}, '
                 '{policy: random, tasks: [log, planks, stick, crafting_table], transitions: 600}]')
    settings = {"run_dir": tmp_path / "runs", "offline.dataset": tmp_path / "data", "offline.behaviour": behaviour,
                "offline.envs_per_collector": 8, "offline.row_group_size": 128, "offline.gradient_steps": 30,
                "offline.eval_every": 15, "offline.log_every": 10, "offline.eval_episodes_per_task": 2,
                "offline.checkpoint_every": 15, "offline.cds_warmup_steps": 5,
                "offline.hidden": "[32]"}
    return [x for k, v in settings.items() for x in ("--set", f"{k}={v}")]


def test_collect_then_train_cds_logs_success_and_sharing_heatmap(ray_session, tmp_path, capsys) -> None:
    args = _overrides(tmp_path)
    assert main(["collect", "configs/offline_cds.yaml", *args]) == 0
    card = DatasetCard.read(tmp_path / "data")
    assert card.transitions == 1200 and card.task_names == TASKS and card.transitions_per_second > 0
    assert [b["id"] for b in card.behaviour] == ["scripted:0.9", "random"]
    data, _ = read_transitions(tmp_path / "data")
    assert len(data) == 1200 and sum(card.transitions_per_task.values()) == 1200
    # Collecting again into a folder that holds data is refused (exit 2) unless --overwrite.
    assert main(["collect", "configs/offline_cds.yaml", *args]) == 2
    assert "already holds data" in capsys.readouterr().err

    assert main(["train", "configs/offline_cds.yaml", "--no-live", *args]) == 0
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.data.tags["mto.kind"] == "offline" and run.data.tags["mto.sharing"] == "cds"
    assert run.info.status == "FINISHED"
    # The CQL learner ran as a Ray Train run (its storage lives in the run folder).
    assert (Path(run.data.tags["mto.run_path"]) / "ray_train" / "offline").is_dir()
    metrics = run.data.metrics
    for task in TASKS:
        assert 0.0 <= metrics[f"success_rate/{task}"] <= 1.0
    assert {"loss", "cql_regulariser", "mean_success", "samples_per_second"} <= set(metrics)
    client = MlflowClient(mlflow.get_tracking_uri())
    history = client.get_metric_history(run.info.run_id, "success_rate/log")
    assert [m.step for m in history] == [15, 30]
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/sharing_matrix.png", "plots/success_rate.png"} <= plots
    matrix = json.loads(open(client.download_artifacts(run.info.run_id, "sharing/sharing_matrix.json")).read())
    assert matrix["tasks"] == TASKS and [matrix["accepted_fraction"][i][i] for i in range(6)] == [1.0] * 6
    # --resume continues the same MLflow run from the last checkpoint (step 30) to 45 steps:
    # step counter, CQL learner and running thresholds carry on, no step is logged twice.
    run_path = Path(run.data.tags["mto.run_path"])
    state = json.loads((run_path / "trainer_state.json").read_text())
    assert state["iteration"] == 30 and state["checkpoint"].endswith("iter_000030")
    assert main(["train", "--resume", run.info.run_id, "--run-dir", str(tmp_path / "runs"), "--no-live",
                 "--set", "offline.gradient_steps=45"]) == 0
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == 1
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "success_rate/log")] == [15, 30, 45]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [10, 20, 30, 40, 45]
    state = json.loads((run_path / "trainer_state.json").read_text())
    assert state["iteration"] == 45 and state["mlflow_run_id"] == run.info.run_id
    assert sorted(p.name for p in (run_path / "checkpoints").iterdir()) == ["iter_000030", "iter_000045"]
    with open(run_path / "checkpoints" / "iter_000045" / "sharing_state.pkl", "rb") as f:
        assert pickle.load(f)["batches"]["steps"] == 45  # the batch builder's counter went on from 30
    # A resume whose dataset has gone away stops with the field named, before any Ray Train worker starts.
    (tmp_path / "data").rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["train", "--resume", run.info.run_id, "--run-dir", str(tmp_path / "runs"), "--no-live",
                 "--set", "offline.gradient_steps=60"]) == 2
    assert "offline.dataset" in capsys.readouterr().err
    assert json.loads((run_path / "trainer_state.json").read_text())["iteration"] == 45
    assert client.get_run(run.info.run_id).info.status == "FINISHED"  # refused before the run was reopened
    # mto eval loads RLlib policies; an offline run says where its Q-network is instead.
    capsys.readouterr()
    assert main(["eval", run.info.run_id, "--run-dir", str(tmp_path / "runs")]) == 2
    assert "offline CQL run, which has no RLlib policy to load" in capsys.readouterr().err


def test_collect_refuses_unknown_behaviour_tasks_and_missing_dataset(tmp_path, capsys) -> None:
    args = ["--set", f"offline.dataset={tmp_path / 'none'}", "--set", f"run_dir={tmp_path}"]
    bad = ["--set", "offline.behaviour=[{policy: random, tasks: [diamond]}]"]
    assert main(["collect", "configs/offline_all.yaml", *args, *bad]) == 2
    assert "offline.behaviour.0.tasks: ['diamond'] are not tasks of this config" in capsys.readouterr().err
    assert main(["train", "configs/offline_all.yaml", *args]) == 2
    assert "offline.dataset" in capsys.readouterr().err and not (tmp_path / "mlflow.db").exists()
