"""The action mask inside RLlib's PPO: both our RLModules sample only the actions the Simon Says
env reports as valid, train on its Dict observations, and `mto train` / `mto eval` run with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

from orchestrator.rl.action_masking import ActionMaskedPPOModule
from orchestrator.rl.multitask import MultiTaskPPOModule
from tasks.simon_says import SimonSaysVectorEnv

TASKS = ["log", "planks", "stick", "crafting_table", "wooden_pickaxe"]


def _module(kind: str, env: SimonSaysVectorEnv):
    obs_space, act_space = env.single_observation_space, env.single_action_space
    if kind == "mlp":
        return ActionMaskedPPOModule(observation_space=obs_space, action_space=act_space,
                                     model_config=DefaultModelConfig(fcnet_hiddens=[32, 32]))
    return MultiTaskPPOModule(observation_space=obs_space, action_space=act_space, model_config={
        "architecture": "shared_bottom", "hidden": [32, 32], "num_tasks": len(TASKS), "architecture_params": {}})


@pytest.mark.parametrize("kind", ["mlp", "shared_bottom"])
def test_module_never_samples_an_action_the_env_masks(kind):
    torch.manual_seed(0)
    env = SimonSaysVectorEnv(num_envs=64, tasks=TASKS, horizon=40, action_mask=True)
    module = _module(kind, env)
    # Bias the raw network towards actions that are invalid at the start (crafting a pickaxe),
    # so an unmasked policy would pick them.
    obs, _ = env.reset(seed=0)
    invalid_at_start = np.flatnonzero(obs["action_mask"][0] == 0)
    assert invalid_at_start.size > 150  # premise: almost everything is invalid with an empty inventory
    sampled = valid = 0
    for _ in range(40):
        batch = {Columns.OBS: {k: torch.as_tensor(v) for k, v in obs.items()}}
        with torch.no_grad():
            logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
        actions = torch.distributions.Categorical(logits=logits).sample().numpy()
        valid += int(obs["action_mask"][np.arange(64), actions].sum())
        sampled += actions.size
        obs, *_ = env.step(actions)
    assert valid == sampled
    # Values come from the observations alone; the mask is not an input of the network.
    with torch.no_grad():
        values = module.compute_values({Columns.OBS: {k: torch.as_tensor(v) for k, v in obs.items()}})
    assert values.shape == (64,) and torch.isfinite(values).all()


def test_mlp_module_sees_the_flat_observations_and_keeps_the_dict_space():
    env = SimonSaysVectorEnv(num_envs=2, tasks=TASKS, horizon=40, action_mask=True)
    module = _module("mlp", env)
    assert module.observation_space == env.single_observation_space  # RLlib checks env observations against it
    flat = env.single_observation_space["observations"].shape[0]
    first = next(m for m in module.encoder.modules() if isinstance(m, torch.nn.Linear))
    assert first.in_features == flat


def test_train_and_eval_with_the_action_mask_through_cli(ray_session, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import main
    from orchestrator.runs.tracking import default_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    smoke = str(Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml")
    code = main(["train", smoke, "--no-live", "--run-dir", str(tmp_path), "--set", f"run_dir={tmp_path}",
                 "--set", "training.iterations=1", "--set", "task.action_mask=true",
                 "--set", "model.architecture=shared_bottom"])
    assert code == 0
    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("mto").experiment_id])
    assert run.data.params["task.action_mask"] == "True"
    assert np.isfinite(run.data.metrics["loss/policy_loss"]) and np.isfinite(run.data.metrics["loss/entropy"])
    assert main(["eval", run.info.run_id, "--run-dir", str(tmp_path), "--episodes", "2"]) == 0


def test_action_mask_on_a_backend_without_one_is_refused(tmp_path, capsys):
    from orchestrator.cli import main

    smoke = str(Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml")
    assert main(["check", smoke, "--set", "task.action_mask=true", "--set", "task.backend=crafter"]) == 2
    assert "task.action_mask: only the techtree backend" in capsys.readouterr().err
