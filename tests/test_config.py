"""Config loading: every shipped config loads; bad input is refused with file, field and choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import ConfigError, flatten, load_config, parse_overrides

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem or cfg.name  # names may differ from file names, but must exist
    assert cfg.rl.minibatch_size <= cfg.rl.train_batch_size


def _write(tmp_path, data) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_overrides_are_typed_and_applied(tmp_path):
    cfg = load_config(REPO / "configs/smoke.yaml", ["rl.lr=0.001", "training.iterations=7", "task.tasks=[log, dirt]"])
    assert cfg.rl.lr == pytest.approx(0.001)
    assert cfg.training.iterations == 7
    assert cfg.task.tasks == ["log", "dirt"]


def test_unknown_key_names_file_path_and_valid_keys(tmp_path):
    p = _write(tmp_path, {"name": "x", "rl": {"num_env_runner": 2}})
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg
    assert "rl.num_env_runner" in msg
    assert "did you mean 'num_env_runners'" in msg
    assert "num_envs_per_env_runner" in msg  # the valid keys are listed


def test_wrong_type_and_out_of_range_are_refused(tmp_path):
    p = _write(tmp_path, {"name": "x", "rl": {"lr": "fast", "gamma": 1.5}})
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert "rl.lr" in msg and "rl.gamma" in msg


def test_bad_choice_lists_valid_choices(tmp_path):
    p = _write(tmp_path, {"name": "x", "curriculum": {"kind": "lp"}})
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "curriculum.kind" in str(err.value)
    assert "'uniform'" in str(err.value) and "'learning_progress'" in str(err.value)


def test_unknown_item_suggests_close_match(tmp_path):
    p = _write(tmp_path, {"name": "x", "task": {"tasks": ["wooden_pickaxee"]}})
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "task.tasks" in str(err.value)
    assert "wooden_pickaxe" in str(err.value)


def test_bad_curriculum_param_is_refused_before_anything_runs(tmp_path):
    p = _write(tmp_path, {"name": "x", "curriculum": {"kind": "learning_progress", "params": {"no_such_knob": 1}}})
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "curriculum.params" in str(err.value)


def test_learning_progress_that_can_never_try_a_task_is_refused(tmp_path):
    never = {"kind": "learning_progress", "params": {"untried_weight": 0.0, "uniform_mix": 0.0}}
    p = _write(tmp_path, {"name": "x", "curriculum": never})
    with pytest.raises(ConfigError, match=r"curriculum.params: untried_weight=0 with uniform_mix=0 never samples"):
        load_config(p)
    # Either knob above zero, or evaluation rounds that measure every task, can try every task.
    for params in ({"untried_weight": 0.0}, {"untried_weight": 0.0, "uniform_mix": 0.0, "success_source": "evaluation",
                                                "evaluation_interval_steps": 1000}):
        load_config(_write(tmp_path, {"name": "x", "curriculum": {"kind": "learning_progress", "params": params}}))


def test_minibatch_larger_than_batch_is_refused(tmp_path):
    p = _write(tmp_path, {"name": "x", "rl": {"train_batch_size": 64, "minibatch_size": 128}})
    with pytest.raises(ConfigError, match="minibatch_size"):
        load_config(p)


def test_pareto_mtl_is_refused_for_ppo_losses(tmp_path):
    p = _write(tmp_path, {"name": "x", "model": {"architecture": "shared_bottom", "combiner": "pareto_mtl"}})
    with pytest.raises(ConfigError, match=r"model.combiner: pareto_mtl .* valid choices for simon_says: sum, pcgrad, mgda"):
        load_config(p)


def test_override_of_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_config(REPO / "configs/smoke.yaml", ["rl.lrr=1"])
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_overrides(["rl.lr"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)


def test_flatten_known_answer():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _write(tmp_path, {"name": "x", "rl": {"gamma": 7}})
    code = main(["train", str(p), "--run-dir", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err
    assert "rl.gamma" in err and str(p) in err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--bogus-flag"])
    assert exc.value.code == 2
    assert main(["train"]) == 2
    assert main(["check", str(REPO / "configs/smoke.yaml"), "--set", "rl.num_epochs=0"]) == 2
    assert "rl.num_epochs" in capsys.readouterr().err


def test_off_on_yes_no_stay_strings_in_files_and_overrides(tmp_path):
    """YAML 1.1 would read `off` as False; configs use YAML 1.2 booleans (true/false only)."""
    p = tmp_path / "exp.yaml"
    p.write_text("name: x\nbonus:\n  mode: off\n")
    assert load_config(p).bonus.mode == "off"
    assert load_config(REPO / "configs/smoke.yaml", ["bonus.mode=off"]).bonus.mode == "off"
    assert load_config(REPO / "configs/smoke.yaml", ["model.architecture=shared_bottom", "task.horizon=10"]).task.horizon == 10
    assert parse_overrides(["a=true", "b=False", "c=no"]) == [("a", True), ("b", False), ("c", "no")]


@pytest.mark.parametrize("key", ["name", "tracking.run_name"])
@pytest.mark.parametrize("value", ["../../escaped", "a/b", "..", "a\\b"])
def test_a_name_that_is_not_one_path_component_is_refused(tmp_path, capsys, monkeypatch, key, value):
    """Run folders (and report folders) are named after these: `../../x` would leave run_dir."""
    monkeypatch.chdir(tmp_path)
    p = _write(tmp_path, {"name": "ok"})
    code = main(["train", str(p), "--run-dir", str(tmp_path / "runs" / "inner"), "--set", f"{key}={value}"])
    assert code == 2
    err = capsys.readouterr().err
    assert key in err and "one path component" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["exp.yaml"]  # no run folder anywhere


def test_names_with_dots_quotes_and_spaces_stay_allowed(tmp_path):
    p = _write(tmp_path, {"name": "v1.2 'quoted' run", "tracking": {"run_name": "..x"}})
    assert load_config(p).name == "v1.2 'quoted' run"
