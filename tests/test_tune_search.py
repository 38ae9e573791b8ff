"""`mto tune-groups` and `mto pareto`: real Ray Tune on the session's local Ray, real MLflow (SQLite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.config import ConfigError, config_from_dict, load_config
from orchestrator.runs.tracking import default_tracking_uri
from orchestrator.tune.search import GROUPS_ARTIFACT, run_pareto, run_tune_groups, search_preferences, simplex_lattice


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "runs"), **data}))
    return path


def nested_runs(client: MlflowClient, parent) -> list:
    return client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def test_tune_groups_two_trials_log_parent_and_nested_runs_and_resume(ray_session, tmp_path) -> None:
    config = write_config(tmp_path, {
        "name": "tag_tiny",
        "task": {"family": "grouped_regression", "dataset_params": {
            "num_groups": 2, "tasks_per_group": 2, "samples_per_task": 60, "val_per_task": 20, "test_per_task": 20}},
        "model": {"architecture": "shared_bottom", "hidden": [16]},
        "supervised": {"epochs": 2, "batch_size": 64, "lr": 0.01},
        "tune": {"top_k": 1, "max_groups": 2, "affinity_every": 1, "trial_cpus": 1},
    })
    result = run_tune_groups(config)
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["mto.kind"] == "tune-groups"
    children = nested_runs(client, parent)
    assert sorted(r.data.tags["mto.kind"] for r in children) == ["affinity", "grouping"]  # 2 Tune trials
    grouping_run = next(r for r in children if r.data.tags["mto.kind"] == "grouping")
    assert grouping_run.data.metrics["val_loss_total"] == pytest.approx(result.best["val_loss_total"])
    affinity_run = next(r for r in children if r.data.tags["mto.kind"] == "affinity")
    assert len(client.get_metric_history(affinity_run.info.run_id, "val/loss")) == 2  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert GROUPS_ARTIFACT in artifacts and "plots" in artifacts
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == ["plots/affinity.png"]
    assert result.affinity.shape == (4, 4) and np.isfinite(result.affinity).all()

    # The chosen grouping is usable as `groups:` in a config.
    groups = yaml.safe_load((result.search_path / GROUPS_ARTIFACT).read_text())["groups"]
    # the groups cover exactly the four tasks (groups may overlap, as in TAG; a list `>=` was
    # lexicographic and accepted a wrong cover); its RL twin below checks the same
    assert sorted({n for g in groups for n in g}) == ["task_00", "task_01", "task_02", "task_03"]
    assert 1 <= len(groups) <= 2 and all(groups)
    data = yaml.safe_load(config.read_text())
    assert load_config(config).groups is None
    assert config_from_dict({**data, "groups": groups}, "x").groups == groups

    # Resume: the finished search is restored from Tune's storage; nothing is trained or logged twice.
    again = run_tune_groups(config, resume=True)
    assert again.parent_run_id == result.parent_run_id and again.search_path == result.search_path
    assert len(nested_runs(client, parent)) == 2
    assert again.best["groups"] == result.best["groups"]


def test_tune_groups_on_simon_says_measures_affinity_from_ppo_and_picks_by_success(ray_session, tmp_path,
                                                                                   monkeypatch) -> None:
    """RL search: the co-training PPO trial's learner measures affinity; one grouping trial trains a
    PPO network per group; the grouping is scored by mean success on fresh episodes."""
    tasks = ["log", "planks", "dirt"]
    config = write_config(tmp_path, {
        "name": "tag_rl",
        "task": {"tasks": tasks, "horizon": 30},
        "rl": {"num_env_runners": 0, "num_envs_per_env_runner": 16, "train_batch_size": 256, "minibatch_size": 64,
               "num_epochs": 1},
        "model": {"architecture": "shared_bottom", "hidden": [32]},
        "training": {"iterations": 2, "eval_episodes_per_task": 4},
        "tune": {"top_k": 1, "max_groups": 2, "affinity_every": 1, "affinity_lr": 0.01, "trial_cpus": 1},
    })
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["tune-groups", str(config)]) == 0
    client = MlflowClient(default_tracking_uri(tmp_path / "runs"))
    (parent,) = client.search_runs([client.get_experiment_by_name("mto").experiment_id],
                                   "tags.`mto.kind` = 'tune-groups'")
    assert parent.info.status == "FINISHED"
    children = {r.data.tags["mto.kind"]: r for r in nested_runs(client, parent)}
    assert sorted(children) == ["affinity", "grouping"]
    co_training = children["affinity"]
    assert [m.step for m in client.get_metric_history(co_training.info.run_id, "episode_return_mean")] == [1, 2]
    off_diagonal = [co_training.data.metrics[f"affinity/{a}/{b}"] for a in tasks for b in tasks if a != b]
    assert len(off_diagonal) == 6 and all(np.isfinite(off_diagonal)) and any(v != 0 for v in off_diagonal)
    assert co_training.data.metrics["affinity_time_s"] > 0
    grouping = children["grouping"].data.metrics
    per_task = [grouping[f"success/{t}"] for t in sorted(tasks)]
    assert all(0.0 <= s <= 1.0 for s in per_task)
    assert grouping["mean_success"] == pytest.approx(np.mean(per_task))
    assert parent.data.metrics["best/mean_success"] == pytest.approx(grouping["mean_success"])
    assert 0.0 <= parent.data.metrics["co_training/mean_success"] <= 1.0
    search_path = Path(parent.data.tags["mto.search_path"])
    groups = yaml.safe_load((search_path / GROUPS_ARTIFACT).read_text())["groups"]
    assert sorted({t for g in groups for t in g}) == sorted(tasks) and 1 <= len(groups) <= 2
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == ["plots/affinity.png"]

    # Resume of the finished search: restored from Tune's storage, nothing trained or logged twice.
    again = run_tune_groups(config, resume=True)
    assert again.parent_run_id == parent.info.run_id and again.best["groups"] == groups
    assert len(nested_runs(client, parent)) == 2


@pytest.mark.slow
def test_pareto_toy_solutions_lie_on_the_front_one_per_sector(ray_session, tmp_path) -> None:
    config = write_config(tmp_path, {
        "name": "pareto_toy", "task": {"family": "pareto_toy"},
        "model": {"architecture": "shared_bottom", "combiner": "pareto_mtl"},
        "tune": {"num_preferences": 5, "pareto_steps": 300, "pareto_lr": 0.5, "max_init_steps": 40},
    })
    result = run_pareto(config)
    assert [t["preference_index"] for t in result.trials] == [0, 1, 2, 3, 4]
    for trial in result.trials:
        assert trial["distance_to_front"] <= 1e-2, trial
        assert trial["in_sector"] == 1.0, trial  # closest in angle to its own preference vector
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert len(nested_runs(client, parent)) == 5
    assert "plots/pareto_front.png" in [a.path for a in client.list_artifacts(parent.info.run_id, "plots")]
    assert parent.data.metrics["max_distance_to_front"] <= 1e-2
    assert parent.data.metrics["solutions_in_own_sector"] == 5


def test_preference_vectors_for_the_sweep() -> None:
    two = search_preferences(2, 5)
    np.testing.assert_allclose(np.degrees(np.arctan2(two[:, 1], two[:, 0])), [0, 22.5, 45, 67.5, 90], atol=1e-9)
    lattice = simplex_lattice(3, 2)  # (2,0,0), (1,1,0), ... : 6 points
    assert lattice.shape == (6, 3)
    np.testing.assert_allclose(np.linalg.norm(lattice, axis=1), 1.0)
    assert search_preferences(3, 7).shape == (10, 3)  # the coarsest lattice with >= 7 points has 10


def test_cli_refuses_bad_search_configs_with_exit_code_2(tmp_path, capsys) -> None:
    rl = write_config(tmp_path, {"name": "x", "task": {"family": "simon_says"}})
    assert main(["tune-groups", str(rl)]) == 2
    assert "model.architecture: task affinity is measured on the shared parameters" in capsys.readouterr().err
    assert main(["pareto", str(rl), "--set", "model.architecture=shared_bottom"]) == 2
    assert "needs positive task losses" in capsys.readouterr().err
    bad = write_config(tmp_path, {"name": "x", "task": {"family": "grouped_regression"},
                                  "model": {"architecture": "shared_bottom"}, "tune": {"top_K": 2}})
    assert main(["pareto", str(bad)]) == 2
    assert "did you mean 'top_k'" in capsys.readouterr().err
    typo = write_config(tmp_path, {"name": "x", "task": {"family": "grouped_regression"},
                                   "model": {"architecture": "shared_bottom"}, "groups": [["task_00", "tsak_01"]]})
    assert main(["check", str(typo)]) == 2
    err = capsys.readouterr().err
    assert "groups[0]: unknown task 'tsak_01'" in err and "valid tasks" in err
    with pytest.raises(ConfigError, match=r"\['task_08'\] are in no group"):
        config_from_dict({"name": "x", "task": {"family": "grouped_regression"}, "model": {"architecture": "shared_bottom"},
                          "groups": [[f"task_0{i}" for i in range(8)]]}, "x")
    never = write_config(tmp_path / "none", {"name": "fresh", "task": {"family": "pareto_toy"},
                                               "model": {"architecture": "shared_bottom"}}) if (tmp_path / "none").mkdir() is None else None
    assert main(["pareto", str(never), "--resume"]) == 2
    assert "no earlier `mto pareto` search" in capsys.readouterr().err
