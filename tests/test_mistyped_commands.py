"""A mistyped command never damages a run (issue 27): a resume against the checkpoint it resumes,
config mistakes refused before they change an experiment, torn files read back after a crash,
a run folder whose path holds characters URIs give meaning to.

The resume cases run through the CLI on the session's Ray with one smoke iteration, in a run
folder named with ``%41``, ``%20`` and ``?``, and compare the finished run (MLflow status and
every file) before and after each refused command.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.config import ConfigError, load_config
from orchestrator.runs.run_folder import STATE_FILE, TrainerState, read_trainer_state
from orchestrator.runs.tracking import default_tracking_uri

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri(monkeypatch):
    """A store another test module left in MLFLOW_TRACKING_URI would win over --run-dir."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


# --------------------------------------------------------------------------- 1 + 5: resume, odd folders
@pytest.fixture(scope="module")
def finished_run(ray_session, tmp_path_factory):
    """configs/smoke.yaml trained one iteration (it finishes) under a folder named ``pct%41 %20 q?x``."""
    run_dir = tmp_path_factory.mktemp("odd") / "pct%41 %20 q?x"
    before = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        # The CurriculumActor saves curriculum_live.pkl after every report: the file a bad resume overwrote.
        assert main(["train", str(SMOKE), "--no-live", "--run-dir", str(run_dir), "--set", "training.iterations=1",
                     "--set", "curriculum.checkpoint_every_seconds=0.01"]) == 0
    finally:
        mlflow.set_tracking_uri(before)
    client = MlflowClient(default_tracking_uri(run_dir))
    (run,) = client.search_runs([client.get_experiment_by_name("mto").experiment_id])
    return run_dir, client, run


def _snapshot(run_dir: Path, client: MlflowClient, run_id: str) -> dict:
    """Every file under the run directory (store included) by content, and the MLflow run's record."""
    files = {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(run_dir.rglob("*")) if p.is_file()}
    run = client.get_run(run_id)
    return {"files": files, "status": run.info.status, "end_time": run.info.end_time, "tags": run.data.tags,
            "metrics": run.data.metrics}


def test_the_store_its_lock_and_the_artifacts_stay_in_a_folder_named_with_percent_and_question_mark(finished_run):
    run_dir, client, run = finished_run
    assert (run_dir / "mlflow.db").is_file() and (run_dir / "mlflow.db.lock").is_file()
    assert Path(run.data.tags["mto.run_path"]).parent == run_dir
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts and (run_dir / "mlartifacts" / "mto").is_dir()
    # Nothing under the names SQLAlchemy used to read from the path ('pctA   q', cut at '?'). MLflow
    # itself makes the parent folder of the URI's undecoded path: an empty folder, nothing in it.
    others = [p for p in run_dir.parent.iterdir() if p != run_dir]
    assert all(p.is_dir() and not any(p.iterdir()) for p in others), others
    assert [p.parent for p in run_dir.parent.rglob("mlflow.db*")] == [run_dir, run_dir]


@pytest.mark.parametrize("override, field, saved, given", [
    ("model.hidden=[32]", "model.hidden", "[64, 64]", "[32]"),
    ("task.tasks=[log, planks]", "task.tasks", "['log', 'planks', 'stick', 'dirt']", "['log', 'planks']"),
    ("task.action_mask=true", "task.action_mask", "False", "True"),
    ("model.architecture=shared_bottom", "model.architecture", "'mlp'", "'shared_bottom'"),
    ("curriculum.kind=uniform", "curriculum.kind", "'learning_progress'", "'uniform'"),
])
def test_resume_with_settings_the_checkpoint_does_not_fit_exits_2_and_leaves_the_run_as_it_was(
        finished_run, capsys, override, field, saved, given):
    run_dir, client, run = finished_run
    before = _snapshot(run_dir, client, run.info.run_id)
    assert before["status"] == "FINISHED"
    assert any(name.endswith("curriculum_live.pkl") for name in before["files"]) and "mlflow.db" in before["files"]
    capsys.readouterr()
    assert main(["train", "--resume", run.info.run_id, "--run-dir", str(run_dir), "--no-live", "--set", override]) == 2
    err = capsys.readouterr().err
    assert f"{field}: the run was trained with {saved}, this resume gives {given}" in err
    assert "Traceback" not in err
    assert _snapshot(run_dir, client, run.info.run_id) == before  # status, curriculum_live.pkl, every file


def test_the_algorithm_is_refused_by_name_too(finished_run, capsys):
    run_dir, client, run = finished_run
    before = _snapshot(run_dir, client, run.info.run_id)
    assert main(["train", "--resume", run.info.run_id, "--run-dir", str(run_dir), "--set", "rl.algorithm=SAC"]) == 2
    assert "rl.algorithm" in capsys.readouterr().err
    assert _snapshot(run_dir, client, run.info.run_id) == before


def test_eval_of_a_checkpoint_whose_config_does_not_fit_exits_2(finished_run, tmp_path, capsys):
    run_dir, client, run = finished_run
    state = TrainerState.load(Path(run.data.tags["mto.run_path"]) / STATE_FILE)
    # The checkpoint copied into another run folder, whose config trains other tasks.
    other = tmp_path / "other-run"
    ckpt = other / "checkpoints" / Path(state.checkpoint).name
    shutil.copytree(state.checkpoint, ckpt)
    data = yaml.safe_load((Path(run.data.tags["mto.run_path"]) / "config.yaml").read_text())
    data["task"]["tasks"] = ["log", "planks"]
    (other / "config.yaml").write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["eval", str(ckpt), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "observation space (task.tasks, task.action_mask)" in err and "Traceback" not in err


def test_a_resume_may_change_budget_and_step_size_and_sends_a_torn_spools_complete_lines(finished_run, capsys):
    """The last test of the module: it continues the run (one more iteration, another lr), after a
    crash left two kept metric lines and a torn third one in metrics_unsent.jsonl."""
    run_dir, client, run = finished_run
    run_path = Path(run.data.tags["mto.run_path"])
    spool = run_path / "metrics_unsent.jsonl"
    lines = [json.dumps({"step": s, "timestamp": 1_700_000_000_000 + s, "metrics": {"kept_metric": float(s)}})
             for s in (101, 102)]
    spool.write_text("\n".join(lines) + "\n" + lines[0][:25])  # killed mid-append
    capsys.readouterr()
    assert main(["train", "--resume", run.info.run_id, "--run-dir", str(run_dir), "--no-live",
                 "--set", "training.iterations=2", "--set", "rl.lr=0.001"]) == 0
    out = capsys.readouterr().out
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "kept_metric")] == [(101, 101.0),
                                                                                                   (102, 102.0)]
    assert not spool.exists()
    assert (run_path / "metrics_unsent.jsonl.torn").read_text() == lines[0][:25] + "\n"
    assert out.count("was torn") == 1
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert TrainerState.load(run_path / STATE_FILE).iteration == 2


def test_which_settings_a_resume_may_change_known_answers():
    from orchestrator.runs.resume_settings import changed_settings

    saved = load_config(SMOKE)
    allowed = load_config(SMOKE, ["training.iterations=9", "rl.lr=0.001", "rl.num_env_runners=2",
                                  "curriculum.refresh_every_seconds=3", "tune.num_samples=4"])
    assert changed_settings(saved, allowed) == []
    refused = load_config(SMOKE, ["model.hidden=[32]", "curriculum.params={uniform_mix: 0.2}", "seed=1",
                                  "rl.lean_connectors=true", "rl.lr=0.002", "task.horizon=60"])
    names = [(key, new) for key, _, new in changed_settings(saved, refused)]
    assert names == [("curriculum.params.uniform_mix", 0.2), ("model.hidden", [32]), ("rl.lean_connectors", True),
                     ("seed", 1), ("task.horizon", 60)]


# --------------------------------------------------------------------------- 2: config mistakes
def _check(path: Path, capsys, *overrides: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", str(path), *[a for o in overrides for a in ("--set", o)]])
    return code, capsys.readouterr().err


def test_a_second_rl_section_is_refused_naming_the_key_and_both_lines(tmp_path, capsys):
    path = tmp_path / "twice.yaml"
    text = SMOKE.read_text()
    path.write_text(text + "rl:\n  lr: .inf\n")
    rl_line = text.splitlines().index("rl:") + 1
    code, err = _check(path, capsys)
    assert code == 2
    assert f"{path}: duplicate key 'rl' on line {rl_line} and line {len(text.splitlines()) + 1}" in err


def test_infinity_and_nan_are_refused_wherever_a_float_is_read(tmp_path, capsys):
    for override, field in [("rl.lr=.inf", "rl.lr"), ("rl.lr=inf", "rl.lr"), ("bonus.size=.nan", "bonus.size"),
                            ("curriculum.params={uniform_mix: .nan}", "curriculum.params.uniform_mix"),
                            ("tune.search_space={rl.lr: {uniform: [0.001, .inf]}}", "tune.search_space"),
                            ("sac.tau=-.inf", "sac.tau")]:
        code, err = _check(SMOKE, capsys, override)
        assert code == 2 and field in err, (override, err)


def test_sizes_must_be_at_least_one(capsys):
    code, err = _check(SMOKE, capsys, "model.hidden=[0]")
    assert code == 2 and "model.hidden" in err and "[0]" in err
    code, err = _check(SMOKE, capsys, "model.hidden=[64, -1]")
    assert code == 2 and "model.hidden" in err


def test_an_empty_or_repeated_task_list_blames_task_tasks(capsys):
    code, err = _check(SMOKE, capsys, "task.tasks=[]")
    assert code == 2 and "task.tasks" in err and "max_depth" not in err
    code, err = _check(SMOKE, capsys, "task.tasks=[log, log]")
    assert code == 2 and "task.tasks" in err and "'log'" in err and "Traceback" not in err


def test_a_file_that_is_not_utf8_or_cannot_be_read_is_exit_2_naming_it(tmp_path, capsys):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(SMOKE.read_bytes().replace(b"name: smoke", b"name: sm\xf6ke"))
    code, err = _check(latin1, capsys)
    assert code == 2 and f"{latin1}: not UTF-8 text (byte 0xf6 on line 2)" in err
    folder = tmp_path / "a_folder.yaml"
    folder.mkdir()
    code, err = _check(folder, capsys)
    assert code == 2 and str(folder) in err
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.yaml"
        locked.write_text(SMOKE.read_text())
        locked.chmod(0)
        code, err = _check(locked, capsys)
        assert code == 2 and f"{locked}: cannot be read" in err


def test_a_seed_numpy_cannot_take_is_refused(capsys):
    code, err = _check(SMOKE, capsys, "seed=-1")
    assert code == 2 and "seed" in err
    code, err = _check(SMOKE, capsys, f"seed={2**80}")
    assert code == 2 and "seed" in err


# --------------------------------------------------------------------------- 3: torn files
def test_spool_sends_complete_lines_and_sets_the_torn_tail_aside(tmp_path, capsys):
    from orchestrator.runs.metrics_buffer import MetricsSpool

    uri = default_tracking_uri(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("spool")
    spool = MetricsSpool(tmp_path)
    lines = [json.dumps({"step": s, "timestamp": 1_700_000_000_000 + s, "metrics": {"m": s * 1.5}}) for s in (1, 2, 3)]
    spool.path.write_text("\n".join(lines) + "\n" + '{"step": 4, "timestamp": 17')
    with mlflow.start_run() as run:
        assert spool.waiting == 3  # the torn tail is set aside at first read, not counted
        spool._keep({"m": 6.0}, step=5)  # an append after a torn tail starts on a line of its own
        assert spool.waiting == 4
        assert spool.send_waiting(timeout_s=5)
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "m")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.5), (2, 3.0), (3, 4.5), (5, 6.0)]
    assert not spool.path.exists()
    assert (tmp_path / "metrics_unsent.jsonl.torn").read_text() == '{"step": 4, "timestamp": 17\n'
    assert capsys.readouterr().out.count("was torn") == 1


def test_a_torn_trainer_state_falls_back_to_the_newest_checkpoints_copy(tmp_path, capsys):
    for it in (1, 2):
        folder = tmp_path / "checkpoints" / f"iter_{it:06d}"
        folder.mkdir(parents=True)
        TrainerState(iteration=it, env_steps=100 * it, checkpoint=str(folder), mlflow_run_id="abc").save(
            folder / STATE_FILE)
    (tmp_path / "checkpoints" / "iter_000002" / STATE_FILE).write_text('{"iteration": 2, "env_')  # torn too
    (tmp_path / STATE_FILE).write_text('{"iteration": 3, "env_steps": 3')
    state = read_trainer_state(tmp_path, "--resume x")
    assert (state.iteration, state.env_steps, state.mlflow_run_id) == (1, 100, "abc")
    assert "was torn" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "checkpoints")
    with pytest.raises(ConfigError, match=f"{tmp_path / STATE_FILE} is unreadable"):
        read_trainer_state(tmp_path, "--resume x")


def test_a_torn_curriculum_state_is_set_aside_and_the_actor_starts_fresh(tmp_path):
    from curricula import build_curriculum
    from orchestrator.rl.curriculum_actor import CurriculumActor

    live = tmp_path / "curriculum_live.pkl"
    actor = CurriculumActor(build_curriculum("uniform", ["a", "b"]), checkpoint_path=str(live))
    actor.save_checkpoint()
    whole = live.read_bytes()
    live.write_bytes(whole[: len(whole) // 2])
    restarted = CurriculumActor(build_curriculum("uniform", ["a", "b"]), checkpoint_path=str(live))
    assert restarted.restored_from is None and not live.exists()
    assert (tmp_path / "curriculum_live.pkl.torn").read_bytes() == whole[: len(whole) // 2]
    # A whole file still restores.
    live.write_bytes(whole)
    assert CurriculumActor(build_curriculum("uniform", ["a", "b"]), checkpoint_path=str(live)).restored_from == str(live)
    assert pickle.loads(whole)["kind"] == "uniform"


def test_a_torn_manifest_sets_the_checkpoint_aside(tmp_path):
    from orchestrator.runs.checkpoints import checkpoint_problem, write_manifest

    folder = tmp_path / "iter_000001"
    folder.mkdir()
    (folder / "curriculum.pkl").write_bytes(b"x")
    write_manifest(folder)
    manifest = folder / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:20])
    assert "manifest.json is unreadable" in checkpoint_problem(folder)


def test_a_torn_search_state_is_set_aside_and_the_search_goes_on(tmp_path, capsys):
    from orchestrator.tune.search import SEARCH_STATE, _read_state, _save_state

    _save_state(tmp_path, {"parent_run_id": "abc", "candidates": [[["a"], ["b"]]]})
    assert _read_state(tmp_path) == {"parent_run_id": "abc", "candidates": [[["a"], ["b"]]]}
    whole = (tmp_path / SEARCH_STATE).read_text()
    (tmp_path / SEARCH_STATE).write_text(whole[:30])
    assert _read_state(tmp_path) == {}
    assert (tmp_path / (SEARCH_STATE + ".torn")).read_text() == whole[:30]
    assert capsys.readouterr().out.count("was torn") == 1


def test_load_config_refuses_and_names_a_config_yaml_torn_in_a_run_folder(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(SMOKE.read_text()[:40] + "\n  - [unclosed")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)
