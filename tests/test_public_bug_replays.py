"""Failure modes from public bug reports of Ray, RLlib and MLflow, replayed on the product (issue 18):
relative paths handed to Ray workers, concurrent first use of an MLflow store, user text in MLflow
filter strings, configs RLlib refuses at build time, and an inherited MLFLOW_RUN_ID."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from orchestrator.cli import main
from orchestrator.config import config_from_dict, load_config
from orchestrator.runs import tracking
from orchestrator.runs.tracking import default_tracking_uri, ensure_experiment, find_run, search_runs_equal

REPO = Path(__file__).resolve().parent.parent
MTO = str(Path(sys.executable).with_name("mto"))
# The input: each value valid alone, the combination refused by RLlib's validate().
REFUSED_BATCH = ["--set", "rl.num_env_runners=2", "--set", "rl.num_envs_per_env_runner=16",
                 "--set", "rl.rollout_fragment_length=7", "--set", "rl.train_batch_size=512"]


def user_checkout(tmp_path: Path) -> Path:
    """A directory laid out like the repository root (configs/ at the top), to run `mto` from."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "configs", root / "configs")
    return root


def run_mto(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None, timeout: int = 600):
    """`mto ...` in a fresh process, as a user types it (relative paths, run from ``cwd``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    env.update({"RAY_USAGE_STATS_ENABLED": "0"}, **(env_extra or {}))  # Ray token auth: from tests/conftest.py
    return subprocess.run([MTO, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- 1. relative paths
def test_relative_paths_in_a_config_are_made_absolute_on_the_driver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "configs/offline_cds.yaml", ["tune.storage_path=tune_here",
                                                          "tracking.tracking_uri=sqlite:///db/mlflow.db"])
    assert cfg.offline.dataset == str(tmp_path / "runs/datasets/offline_simon_says")
    assert cfg.run_dir == str(tmp_path / "runs")
    assert cfg.tune.storage_path == str(tmp_path / "tune_here")
    assert cfg.tracking.tracking_uri == f"sqlite:///{tmp_path / 'db/mlflow.db'}"
    # URIs are not paths of this machine: left alone.
    remote = load_config(REPO / "configs/smoke.yaml", ["tune.storage_path=s3://bucket/tune",
                                                      "tracking.tracking_uri=http://127.0.0.1:5000"])
    assert remote.tune.storage_path == "s3://bucket/tune"
    assert remote.tracking.tracking_uri == "http://127.0.0.1:5000"
    # Loading the resolved config again (a run folder's config.yaml, a Ray worker) changes nothing.
    again = config_from_dict(cfg.to_dict(), "again")
    assert again.to_dict() == cfg.to_dict()


def test_relative_sqlite_tracking_uri_from_the_environment_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel/mlflow.db")
    assert tracking.resolve_tracking_uri(None, "runs") == f"sqlite:///{tmp_path / 'rel/mlflow.db'}"


def test_readme_offline_commands_from_the_repository_root(tmp_path):
    """The README's offline section, run from a checkout with its relative paths, in fresh processes
    (smaller budgets so that it takes seconds; the verbatim commands run under -m slow). The train
    also inherits an unrelated MLFLOW_RUN_ID, which it must nest under and never write over."""
    root = user_checkout(tmp_path)
    small_collect = ["--set", "offline.behaviour=[{policy: scripted, skill: 0.9, tasks: [wooden_pickaxe, cobblestone], "
                     "transitions: 1500}, {policy: random, tasks: [log, planks, stick, crafting_table], transitions: 1500}]"]
    collected = run_mto(["collect", "configs/offline_cds.yaml", *small_collect], root)
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert (root / "runs/datasets/offline_simon_says/dataset_card.json").is_file()

    store = default_tracking_uri(root / "runs")
    client = tracking.tracking_client(store)
    other = client.create_run(ensure_experiment("someone-else", store, root / "runs"), run_name="their-run")
    client.log_param(other.info.run_id, "sharing", "theirs")
    client.set_terminated(other.info.run_id, "FINISHED")

    small_train = ["--set", "offline.gradient_steps=40", "--set", "offline.eval_every=40",
                   "--set", "offline.eval_episodes_per_task=2", "--set", "offline.log_every=20", "--no-live"]
    trained = run_mto(["train", "configs/offline_cds.yaml", *small_train], root,
                      env_extra={"MLFLOW_RUN_ID": other.info.run_id})
    assert trained.returncode == 0, trained.stderr[-3000:]

    theirs = client.get_run(other.info.run_id)
    assert (theirs.info.run_name, theirs.info.status) == ("their-run", "FINISHED")
    assert theirs.data.params == {"sharing": "theirs"} and not theirs.data.metrics
    assert "mto.kind" not in theirs.data.tags
    ours = [r for r in client.search_runs([client.get_experiment_by_name("mto").experiment_id])]
    assert len(ours) == 1
    (run,) = ours
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == other.info.run_id
    assert run.data.tags["mto.kind"] == "offline"
    assert run.data.params["offline.dataset"] == str(root / "runs/datasets/offline_simon_says")
    assert any(k.startswith("success_rate/") for k in run.data.metrics)
    assert Path(run.data.tags["mto.run_path"]).parent == root / "runs"


def test_unknown_inherited_mlflow_run_id_is_refused_before_a_run_folder_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tracking, "_INHERITED", [])
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123456789abcdef0123456789abcdef")
    run_dir = tmp_path / "runs"
    code = main(["train", str(REPO / "configs/smoke.yaml"), "--no-live", "--set", f"run_dir={run_dir}",
                 "--set", f"tracking.tracking_uri={default_tracking_uri(run_dir)}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "MLFLOW_RUN_ID=0123456789abcdef0123456789abcdef" in err and "unset it" in err
    assert not [p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("smoke")]
    assert "MLFLOW_RUN_ID" not in os.environ  # taken out: no later MLflow call can reopen it


# --------------------------------------------------------------------------- 2. concurrent first use
def _first_use(barrier, stores: list[str], experiment_names: list[str], out) -> None:
    """One of two processes: at each barrier, both use a fresh store (or create the same new
    experiment) at the same instant, then start a run in it."""
    import traceback

    from orchestrator.runs.tracking import ensure_experiment as ensure

    try:
        for store, name in zip(stores, experiment_names):
            barrier.wait(timeout=60)
            run_dir = Path(store[len("sqlite:///"):]).parent
            experiment_id = ensure(name, store, run_dir)
            with mlflow.start_run(experiment_id=experiment_id):
                mlflow.log_metric("ok", 1.0)
        out.put("ok")
    except BaseException:  # noqa: BLE001 - report any failure to the parent
        out.put(traceback.format_exc())


def test_two_processes_first_using_a_store_at_once_both_succeed(tmp_path):
    fresh = [default_tracking_uri(tmp_path / f"fresh{i}") for i in range(10)]
    existing = default_tracking_uri(tmp_path / "existing")
    ensure_experiment("mto", existing, tmp_path / "existing")
    stores = fresh + [existing] * 10
    names = ["mto"] * 10 + [f"new-experiment-{i}" for i in range(10)]
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_first_use, args=(barrier, stores, names, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == ["ok", "ok"], "\n".join(r for r in results if r != "ok")
    for store, name in zip(stores, names):
        client = MlflowClient(store)
        runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
        assert len(runs) == 2  # both processes' runs, in one experiment


@pytest.mark.slow
def test_two_smoke_trainings_started_at_the_same_instant_both_finish_ten_times(tmp_path):
    root = user_checkout(tmp_path)
    args = ["train", "configs/smoke.yaml", "--no-live", "--set", "training.iterations=1"]
    for attempt in range(10):
        run_dir = f"runs{attempt}"
        procs = [subprocess.Popen([MTO, *args, "--set", f"run_dir={run_dir}"], cwd=root, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
                                       "RAY_USAGE_STATS_ENABLED": "0"})
                 for _ in range(2)]
        outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
        assert [code for code, _ in outcomes] == [0, 0], f"attempt {attempt}: " + "\n".join(e[-2000:] for _, e in outcomes)
        folders = [p for p in (root / run_dir).iterdir() if p.is_dir() and p.name.startswith("smoke-")]
        assert len(folders) == 2


# --------------------------------------------------------------------------- 3. user text in filters
@pytest.mark.parametrize("name", ["bob's-run", 'the "big" run', "both ' and \" quotes", "100%_done"])
def test_runs_are_found_by_any_name(tmp_path, name):
    store = default_tracking_uri(tmp_path)
    experiment_id = ensure_experiment("mto", store, tmp_path)
    client = MlflowClient(store)
    wanted = client.create_run(experiment_id, run_name=name).info.run_id
    # Decoys a wildcard or a half-quoted filter would match instead.
    for decoy in ["bob_s-run", "bob", "the _big_ run", "both _ and _ quotes", "100xxdone", "1000_done"]:
        client.create_run(experiment_id, run_name=decoy)
    assert find_run(name, store).info.run_id == wanted
    found = search_runs_equal(client, [experiment_id], "attributes.run_name", name)
    assert [r.info.run_id for r in found] == [wanted]
    with pytest.raises(LookupError, match="no MLflow run"):
        find_run(name + "x", store)


def test_report_eval_and_resume_by_a_name_with_quotes(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    name = "bob's \"first\" run"
    common = ["--run-dir", str(tmp_path)]
    # --run-dir alone puts a new run there (it used to be read for --resume/eval/report only).
    assert main(["train", str(REPO / "configs/smoke.yaml"), "--no-live", *common,
                 "--set", f"tracking.run_name={name}", "--set", "training.iterations=1"]) == 0
    assert [p.name.startswith("smoke-") for p in tmp_path.iterdir() if p.is_dir() and p.name != "mlartifacts"] == [True]
    assert main(["report", name, *common, "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report/success_rate.png").is_file()
    assert main(["eval", name, *common, "--episodes", "2"]) == 0
    assert main(["train", "--resume", name, *common, "--no-live", "--set", "training.iterations=2"]) == 0
    run = find_run(name, default_tracking_uri(tmp_path))
    client = MlflowClient(default_tracking_uri(tmp_path))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "env_steps_total")] == [1, 2]
    capsys.readouterr()
    assert main(["report", "nobody's run", *common]) == 2
    assert "no MLflow run with id or name 'nobody's run'" in capsys.readouterr().err


# --------------------------------------------------------------------------- 4. what RLlib refuses
def test_check_runs_rllibs_own_validation(capsys):
    assert main(["check", str(REPO / "configs/smoke.yaml"), *REFUSED_BATCH]) == 2
    err = capsys.readouterr().err
    for field in ("rl.num_env_runners=2", "rl.num_envs_per_env_runner=16", "rl.rollout_fragment_length=7",
                  "rl.train_batch_size=512"):
        assert field in err
    assert "RLlib refuses" in err and "Traceback" not in err
    # The same values with a fragment length that divides: accepted.
    fixed = REFUSED_BATCH[:-3] + ["rl.rollout_fragment_length=16", "--set", "rl.train_batch_size=512"]
    assert main(["check", str(REPO / "configs/smoke.yaml"), *fixed]) == 0


def test_train_refused_by_rllib_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "runs"
    code = main(["train", str(REPO / "configs/smoke.yaml"), "--no-live", *REFUSED_BATCH, "--set", f"run_dir={run_dir}",
                 "--set", f"tracking.tracking_uri={default_tracking_uri(run_dir)}"])
    assert code == 2
    assert "rl.rollout_fragment_length=7" in capsys.readouterr().err
    assert not run_dir.exists()  # no run folder, no MLflow store, no run


def test_every_shipped_config_passes_check_from_the_repository_root(tmp_path, monkeypatch, capsys):
    root = user_checkout(tmp_path)
    monkeypatch.chdir(root)
    configs = sorted(p.relative_to(root).as_posix() for p in (root / "configs").glob("*.yaml"))
    assert len(configs) >= 10
    for config in configs:
        assert main(["check", config]) == 0, f"{config}: {capsys.readouterr().err}"
    assert not (root / "runs").exists()  # checking writes nothing



def test_check_validates_the_algorithm_the_config_runs(capsys):
    """PPO refuses the issue's batch settings (on-policy batches are whole fragments); SAC (Meta-World)
    samples into a replay buffer and accepts them: `mto check` validates the RLlib config of the
    algorithm `mto train` would build, not always PPO's."""
    pytest.importorskip("metaworld")
    assert main(["check", str(REPO / "configs/smoke.yaml"), *REFUSED_BATCH]) == 2
    capsys.readouterr()
    assert main(["check", str(REPO / "configs/mt10_sac.yaml"), *REFUSED_BATCH]) == 0
