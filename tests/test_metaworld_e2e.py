"""Meta-World MT10 through the CLI: `mto train configs/mt10_sac.yaml` on a real local Ray (RLlib SAC,
CurriculumActor, MLflow), then `mto eval` on its checkpoint; a refused SAC config exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("metaworld", reason="needs the 'metaworld' extra")

from mlflow.tracking import MlflowClient  # noqa: E402

from orchestrator.cli import main  # noqa: E402
from orchestrator.runs.run_folder import STATE_FILE, TrainerState  # noqa: E402
from orchestrator.runs.tracking import default_tracking_uri  # noqa: E402
from tasks.metaworld import MT10  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# The shipped config at a size for 2 shared cores: 50-step episodes (one per env per iteration of
# 500 env steps, so every iteration reports finished episodes), a small network and batch.
SMALL = ["--set", "training.iterations=2", "--set", "task.horizon=50", "--set", "sac.env_steps_per_iteration=500",
         "--set", "sac.learning_starts=200", "--set", "sac.train_batch_size=64", "--set", "model.hidden=[32,32]"]


@pytest.mark.parametrize("variant", [
    [],
    pytest.param(["--set", "model.architecture=care", "--set", "model.combiner=pcgrad"], marks=pytest.mark.slow),
], ids=["mt_sac", "care_pcgrad"])
def test_mt10_sac_train_then_eval(ray_session, tmp_path, monkeypatch, capsys, variant):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(["train", str(REPO / "configs/mt10_sac.yaml"), "--no-live", "--run-dir", str(tmp_path),
                 "--set", f"run_dir={tmp_path}", *SMALL, *variant])
    assert code == 0
    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("mto").experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for task in MT10:  # per-task success (the curriculum's estimate) and SAC's per-task temperature
        assert f"success_rate/{task}" in metrics
        assert 0.0 <= metrics[f"success_rate/{task}"] <= 1.0
    assert sum(metrics[f"episodes/{t}"] for t in MT10) >= 20  # 10 envs x 2 iterations of 50-step episodes
    assert [m.step for m in client.get_metric_history(run.info.run_id, "env_steps_total")] == [1, 2]
    assert metrics["env_steps_total"] >= 1000
    assert "loss/qf_loss" in metrics and "loss/policy_loss" in metrics
    assert any(k.startswith("alpha/") for k in metrics)
    state = TrainerState.load(Path(run.data.tags["mto.run_path"]) / STATE_FILE)
    assert state.iteration == 2 and state.checkpoint

    capsys.readouterr()
    assert main(["eval", run.info.run_id, "--run-dir", str(tmp_path), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert "reach-v3" in out and "window-close-v3" in out and "mean success" in out


@pytest.mark.parametrize("setting,reason", [
    ("model.combiner=pareto_mtl", "SAC's per-task actor losses"),
    ("task.action_mask=true", "discrete-action option"),
])
def test_refused_sac_settings_exit_2_naming_why(tmp_path, capsys, setting, reason):
    code = main(["train", str(REPO / "configs/mt10_sac.yaml"), "--no-live", "--run-dir", str(tmp_path),
                 "--set", "model.architecture=shared_bottom", "--set", setting])
    assert code == 2
    err = capsys.readouterr()
    assert reason in err.err + err.out
    assert not any(tmp_path.iterdir())  # nothing started, nothing written


def test_two_sac_learners_all_reduce_before_combining(ray_session):
    """num_learners=2 on CPU (gloo) with PCGrad: each learner all-reduces its per-task actor and critic
    gradients (and the temperatures') before combining, so both copies stay identical."""
    import torch

    from orchestrator.config import load_config
    from orchestrator.rl.algorithm import build_algorithm, env_config_for, on_every_learner

    cfg = load_config(REPO / "configs/mt10_sac.yaml", [
        "task.tasks=[reach-v3, drawer-close-v3]", "task.horizon=20", "rl.num_learners=2", "rl.num_envs_per_env_runner=4",
        "rl.num_env_runners=0", "rl.overlap_sampling=false",  # the session's 2 CPUs go to the 2 learners
        "sac.learning_starts=40", "sac.env_steps_per_iteration=120", "sac.train_batch_size=32", "model.hidden=[16]",
        "model.architecture=shared_bottom", "model.combiner=pcgrad"])
    algo = build_algorithm(cfg, env_config_for(cfg, ["reach-v3", "drawer-close-v3"], None, None))
    try:
        algo.train()
        flat = on_every_learner(algo, lambda learner: torch.cat(
            [p.detach().reshape(-1) for p in learner.module["default_policy"].parameters()]))
        alphas = on_every_learner(algo, lambda learner: learner.alphas())
    finally:
        algo.stop()
    assert len(flat) == 2 and torch.equal(flat[0], flat[1])
    assert alphas[0] == alphas[1] and alphas[0]["reach-v3"] != 1.0  # trained, and identically
    # (without the learner's own all-reduce the two copies differ after this one iteration: checked)
