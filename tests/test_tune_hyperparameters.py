"""`mto tune`: a Ray Tune hyperparameter search over an RL config, through the CLI, on the session's
local Ray and a real MLflow (SQLite); the search space's checks; spec -> Tune sampler translation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.runs.tracking import default_tracking_uri
from orchestrator.tune.config import SAMPLERS, sampler_extremes
from orchestrator.tune.hyperparameters import (
    BEST_CONFIG,
    MAX_CHECKED_POINTS,
    canonical_key,
    extreme_points,
    tune_sampler,
)

REPO = Path(__file__).resolve().parent.parent
TASKS = ["log", "planks", "dirt"]


def tiny_config(tmp_path: Path, search_space: dict, **tune: object) -> Path:
    """configs/smoke.yaml's settings, one PPO iteration of tiny batches sampled in the trial process."""
    data = {
        "name": "tune_tiny",
        "seed": 0,
        "task": {"backend": "techtree", "tasks": TASKS, "horizon": 30},
        "curriculum": {"kind": "learning_progress", "refresh_every_episodes": 8, "refresh_every_seconds": 1.0,
                       "report_every_episodes": 4},
        "bonus": {"mode": "dynamic", "size": 0.1},
        "rl": {"num_env_runners": 0, "num_envs_per_env_runner": 16, "train_batch_size": 256, "minibatch_size": 64,
               "num_epochs": 1},
        "model": {"hidden": [32]},
        "training": {"iterations": 1, "eval_episodes_per_task": 4},
        "tune": {"trial_cpus": 1, "search_space": search_space, **tune},
    }
    path = tmp_path / "tune_tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_mto_tune_two_trials_write_best_config_and_nested_mlflow_runs(ray_session, tmp_path, monkeypatch,
                                                                      capsys) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "runs"
    config = tiny_config(tmp_path, {"rl.lr": {"grid": [0.0001, 0.003]}, "rl.lambda_": {"uniform": [0.9, 0.99]}})
    assert main(["tune", str(config), "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "mto tune: trials by mean_success" in out and "rank" in out  # the Rich table of trials

    client = MlflowClient(default_tracking_uri(run_dir))
    experiment = client.get_experiment_by_name("mto")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["mto.kind"] == "tune" and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(runs) == 3
    # Params of a nested run = the trial's sampled values, by config path (rl.lambda_ is spelled as in YAML).
    assert sorted(float(r.data.params["rl.lr"]) for r in children) == [0.0001, 0.003]
    assert all(set(r.data.params) == {"rl.lr", "rl.lambda"} for r in children)
    assert all(0.9 <= float(r.data.params["rl.lambda"]) <= 0.99 for r in children)
    for r in children:
        assert r.info.status == "FINISHED"
        metrics = r.data.metrics
        assert {f"success/{t}" for t in TASKS} <= set(metrics)
        assert metrics["objective"] == pytest.approx(sum(metrics[f"success/{t}"] for t in TASKS) / len(TASKS))
    top = max(r.data.metrics["objective"] for r in children)

    # The best full config: in the search folder under the run dir, and on the parent run.
    (best_path,) = list((run_dir / "tune").glob(f"tune_tiny-tune-*/{BEST_CONFIG}"))
    best = load_config(best_path)
    (best_run,) = [r for r in children if float(r.data.params["rl.lr"]) == best.rl.lr]
    assert best_run.data.metrics["objective"] == top  # the best trial's values, not just any trial's
    assert best.rl.lr == float(best_run.data.params["rl.lr"])
    assert best.rl.lambda_ == pytest.approx(float(best_run.data.params["rl.lambda"]))
    assert best.tune.search_space == {} and best.task.tasks == TASKS and best.rl.train_batch_size == 256
    assert parent.data.params["best/rl.lr"] == best_run.data.params["rl.lr"]
    assert parent.data.metrics["best/objective"] == pytest.approx(best_run.data.metrics["objective"])
    assert parent.data.tags["mto.best_run_id"] == best_run.info.run_id
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {BEST_CONFIG, "tune_results.md", "tune_results.json"} <= artifacts
    logged = Path(client.download_artifacts(parent.info.run_id, BEST_CONFIG, str(tmp_path)))
    assert load_config(logged).rl.lr == best.rl.lr


def _refused(tmp_path: Path, capsys, search_space: dict, **rl: object) -> str:
    config = tiny_config(tmp_path, search_space)
    if rl:
        data = yaml.safe_load(config.read_text())
        data["rl"].update(rl)
        config.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "runs"
    assert main(["tune", str(config), "--run-dir", str(run_dir)]) == 2
    assert not run_dir.exists()  # nothing written: no search folder, no MLflow store or run
    err = capsys.readouterr().err
    assert str(config) in err
    return err


def test_unknown_search_space_key_is_refused_naming_it_and_the_valid_keys(tmp_path, capsys) -> None:
    err = _refused(tmp_path, capsys, {"rl.lr": {"grid": [0.001]}, "rl.lrr": {"loguniform": [0.0001, 0.01]}})
    assert "tune.search_space: unknown key 'rl.lrr'; did you mean 'rl.lr'?" in err
    valid = err.split("valid keys:")[1]
    for key in ("rl.lr", "rl.entropy_coeff", "rl.num_epochs", "rl.minibatch_size", "rl.gamma", "rl.lambda",
                "model.hidden", "task.horizon", "bonus.size", "curriculum.params.<name>"):
        assert key in [k.strip() for k in valid.split(",")]
    assert "tune.num_samples" not in valid and "tracking.experiment" not in valid


def test_unknown_sampler_is_refused_naming_it_and_the_valid_samplers(tmp_path, capsys) -> None:
    err = _refused(tmp_path, capsys, {"rl.lr": {"lognormal": [0.0001, 0.01]}})
    assert "tune.search_space" in err and "rl.lr: unknown sampler 'lognormal'; did you mean 'loguniform'?" in err
    assert f"valid samplers: {', '.join(SAMPLERS)}" in err
    err = _refused(tmp_path, capsys, {"rl.lr": [0.0001, 0.01]})  # a bare list is not a sampler
    assert "give one sampler as {sampler: arguments}" in err and "valid samplers: grid, choice" in err


def test_a_grid_value_the_config_refuses_is_caught_before_the_search(tmp_path, capsys) -> None:
    err = _refused(tmp_path, capsys, {"rl.minibatch_size": {"grid": [64, 1024]}, "rl.lr": {"uniform": [0.0001, 0.001]}})
    assert "a trial could draw {rl.minibatch_size: 1024" in err
    assert "minibatch_size (1024) must be <= train_batch_size (256)" in err
    # Two keys that are fine alone but not together (train_batch_size's low end with minibatch's high end).
    err = _refused(tmp_path, capsys, {"rl.minibatch_size": {"choice": [32, 128]},
                                      "rl.train_batch_size": {"randint": [64, 512]}})
    assert "{rl.minibatch_size: 128, rl.train_batch_size: 64}" in err


def test_quantized_bounds_that_are_not_multiples_of_the_step_are_refused_before_anything_is_written(tmp_path, capsys):
    err = _refused(tmp_path, capsys, {"rl.gamma": {"quniform": [0.91, 0.99, 0.02]}})
    assert "tune.search_space.rl.gamma: Ray Tune refuses {'quniform': [0.91, 0.99, 0.02]}" in err
    assert "0.91 is not divisible by quantization factor 0.02" in err and "Traceback" not in err
    err = _refused(tmp_path, capsys, {"rl.lr": {"qloguniform": [0.0001, 0.0105, 0.001]}})
    assert "tune.search_space.rl.lr: Ray Tune refuses" in err
    capsys.readouterr()
    assert main(["check", str(tiny_config(tmp_path, {"rl.gamma": {"quniform": [0.91, 0.99, 0.02]}}))]) == 2
    assert "not divisible by quantization factor 0.02" in capsys.readouterr().err  # `mto check` says so too
    # Bounds on the step's grid: the same pre-check accepts them (Ray builds every sampler).
    from orchestrator.tune.hyperparameters import check_search_space

    config = tiny_config(tmp_path, {"rl.gamma": {"quniform": [0.9, 0.98, 0.02]}})
    check_search_space(load_config(config), str(config))


def test_search_space_specs_translate_to_ray_tune_samplers() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer, Quantized

    lr = tune_sampler({"loguniform": [0.0001, 0.01]})
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (0.0001, 0.01)
    assert isinstance(lr.get_sampler(), Float._LogUniform)
    uniform = tune_sampler({"uniform": [0.9, 1.0]})
    assert isinstance(uniform.get_sampler(), Float._Uniform) and (uniform.lower, uniform.upper) == (0.9, 1.0)
    q = tune_sampler({"quniform": [0.0, 0.05, 0.01]})
    assert isinstance(q.get_sampler(), Quantized) and q.get_sampler().q == 0.01
    assert isinstance(q.get_sampler().get_sampler(), Float._Uniform)
    epochs = tune_sampler({"randint": [1, 5]})
    assert isinstance(epochs, Integer) and (epochs.lower, epochs.upper) == (1, 5)
    draws = epochs.sample(size=200, random_state=0)
    assert set(draws) == {1, 2, 3, 4}  # Ray Tune's randint excludes the upper bound
    hidden = tune_sampler({"choice": [[64, 64], [128]]})
    assert isinstance(hidden, Categorical) and hidden.categories == [[64, 64], [128]]
    assert tune_sampler({"grid": [128, 256]}) == {"grid_search": [128, 256]}
    assert isinstance(tune_sampler({"lograndint": [16, 1024]}).get_sampler(), Integer._LogUniform)


def test_extremes_keys_and_checked_points_known_answers() -> None:
    assert sampler_extremes({"randint": [1, 5]}) == [1, 4]
    assert sampler_extremes({"loguniform": [0.0001, 0.01]}) == [0.0001, 0.01]
    assert sampler_extremes({"quniform": [0.12, 0.5, 0.1]}) == pytest.approx([0.1, 0.5])
    assert sampler_extremes({"grid": ["relu", "tanh", "silu"]}) == ["relu", "tanh", "silu"]
    assert canonical_key("rl.lambda_") == canonical_key("rl.lambda") == "rl.lambda"
    assert canonical_key("curriculum.params.uniform_mix") == "curriculum.params.uniform_mix"
    for bad in ("rl", "rl.lrr", "tune.num_samples", "name", "curriculum.params", "rl.lr.x"):
        assert canonical_key(bad) is None, bad
    space = {"rl.lr": {"loguniform": [0.0001, 0.01]}, "rl.num_epochs": {"grid": [1, 2, 4]}}
    assert extreme_points(space) == [{"rl.lr": lr, "rl.num_epochs": e} for lr in (0.0001, 0.01) for e in (1, 2, 4)]
    # Too many combinations: every key alone and every pair of keys, the others as in the config.
    wide = {f"k{i}": {"grid": list(range(4))} for i in range(7)}  # 4**7 > MAX_CHECKED_POINTS
    assert 4 ** 7 > MAX_CHECKED_POINTS
    points = extreme_points(wide)
    assert len(points) == 7 * 4 + 21 * 16 and {"k0": 3, "k6": 0} in points


def test_shipped_tune_config_searches_ppo_hyperparameters() -> None:
    from orchestrator.tune.hyperparameters import check_search_space

    cfg = load_config(REPO / "configs/simon_says_tune.yaml")
    check_search_space(cfg, "configs/simon_says_tune.yaml")
    assert {"rl.lr", "rl.entropy_coeff", "rl.num_epochs", "rl.minibatch_size", "rl.gamma", "rl.lambda"} <= {
        canonical_key(k) for k in cfg.tune.search_space}
    assert cfg.task.tasks == load_config(REPO / "configs/quickstart.yaml").task.tasks
