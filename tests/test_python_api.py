"""The Python API (`orchestrator.train / evaluate / report`) against `mto train`: one config trained
both ways on the session's Ray gives the same run folder layout, the same MLflow run (params,
metrics, artifacts, tags) and a summary that says what MLflow holds; usage errors are `ConfigError`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import orchestrator
from orchestrator.cli import main
from orchestrator.runs.tracking import default_tracking_uri

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs/smoke.yaml"
SMOKE_TASKS = {"log", "planks", "stick", "dirt"}
ONE_ITERATION = ["training.iterations=1"]  # seconds: the layout and the run's records are what is compared


@pytest.fixture(scope="module")
def both_runs(ray_session, tmp_path_factory):
    """`mto train` and `orchestrator.train` on the same config, each into its own run_dir."""
    env = pytest.MonkeyPatch()
    env.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        cli_dir, api_dir = tmp_path_factory.mktemp("cli"), tmp_path_factory.mktemp("api")
        code = main(["train", str(SMOKE), "--no-live", "--run-dir", str(cli_dir), "--set", ONE_ITERATION[0]])
        assert code == 0
        # No MLFLOW_TRACKING_URI left behind by the first run: the second goes to its own run_dir's store.
        assert "MLFLOW_TRACKING_URI" not in os.environ
        summary = orchestrator.train(str(SMOKE), ONE_ITERATION, run_dir=api_dir)
        assert "MLFLOW_TRACKING_URI" not in os.environ
        yield cli_dir, api_dir, summary
    finally:
        env.undo()


def only_run(run_dir: Path):
    client = MlflowClient(default_tracking_uri(run_dir))
    (run,) = client.search_runs([client.get_experiment_by_name("mto").experiment_id])
    return client, run


def layout(run_path: Path) -> list[str]:
    """Every file and folder of a run folder, relative, with the run's own name taken out."""
    return sorted(str(p.relative_to(run_path)) for p in run_path.rglob("*"))


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found.extend(artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return sorted(found)


def test_api_run_has_the_cli_runs_folder_layout_mlflow_run_and_summary(both_runs):
    cli_dir, api_dir, summary = both_runs
    cli_client, cli_run = only_run(cli_dir)
    api_client, api_run = only_run(api_dir)

    # The summary is the run MLflow holds.
    assert summary.run_id == api_run.info.run_id
    assert summary.run_path == Path(api_run.data.tags["mto.run_path"])
    assert summary.tracking_uri == default_tracking_uri(api_dir)
    assert summary.run_path.parent == api_dir.resolve()
    assert summary.iterations == 1
    assert summary.env_steps == int(api_run.data.metrics["env_steps_total"]) >= 512
    assert set(summary.success_rate) == SMOKE_TASKS
    for task, rate in summary.success_rate.items():
        assert rate == pytest.approx(api_run.data.metrics[f"success_rate/{task}"])
    assert summary.checkpoint and Path(summary.checkpoint).parent == summary.run_path / "checkpoints"

    # Same folder layout (names of checkpoints, state files, logs ...).
    cli_path = Path(cli_run.data.tags["mto.run_path"])
    assert layout(summary.run_path) == layout(cli_path)
    assert re.fullmatch(r"smoke-\d{8}-\d{6}-[0-9a-f]{6}", summary.run_path.name)

    # Same MLflow run: status, params (run_dir aside), metric names, artifacts, tag names.
    assert api_run.info.status == cli_run.info.status == "FINISHED"
    assert api_run.info.run_name.startswith("smoke-")
    cli_params, api_params = dict(cli_run.data.params), dict(api_run.data.params)
    assert cli_params.pop("run_dir") == str(cli_dir.resolve())
    assert api_params.pop("run_dir") == str(api_dir.resolve())
    assert api_params == cli_params
    assert set(api_run.data.metrics) == set(cli_run.data.metrics)
    assert artifacts(api_client, api_run.info.run_id) == artifacts(cli_client, cli_run.info.run_id)
    assert set(api_run.data.tags) == set(cli_run.data.tags)
    assert api_run.data.tags["mto.kind"] == cli_run.data.tags["mto.kind"]


def test_api_evaluate_and_report_read_the_api_run(both_runs, tmp_path, capsys):
    _, api_dir, summary = both_runs
    success = orchestrator.evaluate(summary.run_id, episodes=1, run_dir=api_dir)
    assert set(success) == SMOKE_TASKS and all(0.0 <= s <= 1.0 for s in success.values())
    table = orchestrator.report(summary.run_id, out=tmp_path / "plots", run_dir=api_dir)
    assert set(table) == SMOKE_TASKS
    assert table["log"]["success_rate"] == pytest.approx(summary.success_rate["log"])
    assert (tmp_path / "plots" / "success_rate.png").is_file()
    assert "mean success" in capsys.readouterr().out  # the same tables `mto eval` prints


def test_usage_errors_are_config_errors_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(orchestrator.ConfigError, match=r"curriculum\.kind"):
        orchestrator.train(SMOKE, {"curriculum.kind": "lp"}, run_dir=tmp_path)
    with pytest.raises(orchestrator.ConfigError, match="no such config file"):
        orchestrator.train(tmp_path / "missing.yaml", run_dir=tmp_path)
    with pytest.raises(orchestrator.ConfigError, match="give a config file"):
        orchestrator.train(run_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(orchestrator.ConfigError, match="nosuchrun"):
        orchestrator.report("nosuchrun", run_dir=tmp_path / "store")
    with pytest.raises(orchestrator.ConfigError, match="nosuchrun"):
        orchestrator.evaluate("nosuchrun", run_dir=tmp_path / "store")
    # The CLI exits 2 for exactly these, through the same functions.
    assert main(["train", str(SMOKE), "--run-dir", str(tmp_path), "--set", "curriculum.kind=lp"]) == 2
    assert main(["train"]) == 2


def test_a_config_mapping_and_mapping_overrides_validate_as_the_file_and_set_strings_do(tmp_path):
    """A mapping is the YAML file's data: the same checks, the same messages (`off` stays the string)."""
    from orchestrator.config import read_yaml

    data = read_yaml(SMOKE.read_text())
    data["rl"]["num_epochs"] = 0
    with pytest.raises(orchestrator.ConfigError, match=r"rl\.num_epochs"):
        orchestrator.train(data, run_dir=tmp_path)
    from orchestrator.cli import _as_overrides
    from orchestrator.config import load_config

    sets = _as_overrides({"bonus.mode": "off", "model.hidden": [32, 32], "training.max_env_steps": None,
                          "rl.lr": 0.001, "task.tasks": ["log", "planks"]})
    cfg = load_config(SMOKE, sets)
    assert (cfg.bonus.mode, cfg.model.hidden, cfg.training.max_env_steps, cfg.rl.lr, cfg.task.tasks) == (
        "off", [32, 32], None, 0.001, ["log", "planks"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_old_module_paths_do_not_hide_the_api_functions():
    """A checkpoint saved before the subpackages imports `orchestrator.train` (now `orchestrator.rl.training`)."""
    import importlib
    import types

    import orchestrator

    for old in ("orchestrator.train", "orchestrator.evaluate", "orchestrator.report"):
        assert isinstance(importlib.import_module(old), types.ModuleType)
    assert callable(orchestrator.train) and callable(orchestrator.evaluate) and callable(orchestrator.report)
    assert orchestrator.train.__module__ == "orchestrator.cli"
