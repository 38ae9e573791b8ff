"""Multi-task networks inside RLlib PPO: routing by task id, and the learner's update equals
the combiner applied to RLlib's own per-task PPO losses (MGDA, two tasks: closed form)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

from orchestrator.rl.multitask import MultiTaskPPOLearner, MultiTaskPPOModule, multitask_rl_module_spec

NUM_TASKS, FEATURES, ACTIONS, BATCH = 2, 6, 5, 64
OBS_SPACE = gym.spaces.Box(-1.0, 1.0, (NUM_TASKS + FEATURES,), np.float32)
ACT_SPACE = gym.spaces.Discrete(ACTIONS)


def _obs(tasks: np.ndarray, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = np.zeros((len(tasks), NUM_TASKS + FEATURES), np.float32)
    x[np.arange(len(tasks)), tasks] = 1.0
    x[:, NUM_TASKS:] = rng.normal(size=(len(tasks), FEATURES))
    return torch.as_tensor(x)


def test_module_routes_by_task_id_from_observation():
    module = MultiTaskPPOModule(observation_space=OBS_SPACE, action_space=ACT_SPACE, model_config={
        "architecture": "independent", "hidden": [16], "num_tasks": NUM_TASKS})
    obs = _obs(np.array([0, 1, 0, 1]))
    assert module.task_ids(obs).tolist() == [0, 1, 0, 1]
    out = module.forward_train({Columns.OBS: obs})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (4, ACTIONS)
    values = module.compute_values({Columns.OBS: obs})
    assert torch.allclose(values, out[Columns.EMBEDDINGS])
    # Independent networks: changing task 1's parameters leaves task 0's outputs alone.
    before = out[Columns.ACTION_DIST_INPUTS].detach().clone()
    with torch.no_grad():
        for p in module.network.task_parameters(1):
            p.add_(1.0)
    after = module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert torch.allclose(after[[0, 2]], before[[0, 2]])
    assert not torch.allclose(after[[1, 3]], before[[1, 3]])


@pytest.fixture()
def mgda_learner():
    torch.manual_seed(0)  # the network's initialisation decides the gradients below
    config = (
        PPOConfig()
        .environment(observation_space=OBS_SPACE, action_space=ACT_SPACE)
        .rl_module(rl_module_spec=multitask_rl_module_spec("shared_bottom", [16, 16], NUM_TASKS))
        .training(learner_class=MultiTaskPPOLearner, learner_config_dict={
            "combiner": "mgda", "combiner_params": {}, "num_tasks": NUM_TASKS},
            # Policy terms only: with opposite advantages per task, the two gradients conflict.
            entropy_coeff=0.0, vf_loss_coeff=0.0, use_kl_loss=False)
    )
    learner = config.build_learner()
    return config, learner


def _ppo_batch(module) -> dict:
    tasks = np.array([0] * 40 + [1] * 24)
    obs = _obs(tasks, seed=1)
    rng = np.random.default_rng(2)
    with torch.no_grad():
        logits = module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    actions = torch.as_tensor(rng.integers(0, ACTIONS, BATCH))
    logp = torch.log_softmax(logits, -1).gather(1, actions[:, None]).squeeze(1)
    # Opposite advantages per task, so the two task gradients conflict.
    adv = torch.as_tensor(np.where(tasks == 0, 1.0, -1.0) * rng.uniform(0.5, 1.5, BATCH), dtype=torch.float32)
    return {
        Columns.OBS: obs, Columns.ACTIONS: actions, Columns.ACTION_LOGP: logp,
        Columns.ACTION_DIST_INPUTS: logits, Postprocessing.ADVANTAGES: adv,
        Postprocessing.VALUE_TARGETS: torch.as_tensor(rng.normal(size=BATCH), dtype=torch.float32),
        Columns.LOSS_MASK: torch.ones(BATCH, dtype=torch.bool),
    }


def _task_gradient(learner, module, batch, rows) -> torch.Tensor:
    """RLlib's own PPO loss on ``rows`` of the batch, differentiated w.r.t. the shared parameters."""
    mid = "default_policy"
    loss = PPOTorchLearner.compute_loss_for_module(
        learner, module_id=mid, config=learner.config.get_config_for_module(mid),
        batch={**batch, Columns.LOSS_MASK: rows}, fwd_out=module.forward_train(batch))
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(module.network.shared_parameters()))])


def test_learner_gradient_is_mgda_of_per_task_ppo_losses(mgda_learner):
    config, learner = mgda_learner
    mid = "default_policy"
    module = learner.module[mid]
    batch = _ppo_batch(module)
    task = batch[Columns.OBS][:, :NUM_TASKS].argmax(-1)
    shared = list(module.network.shared_parameters())

    # Expected: RLlib's own PPO loss on each task's rows, its gradient on the shared
    # parameters, and the two-task min-norm point in closed form.
    g1, g2 = (_task_gradient(learner, module, batch, task == t).double() for t in range(NUM_TASKS))
    assert float(g1 @ g2) < 0, "test premise: the task gradients conflict"
    alpha = float(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)))
    alpha = min(max(alpha, 0.0), 1.0)
    expected = alpha * g1 + (1 - alpha) * g2

    fwd = module.forward_train(batch)
    total = learner.compute_loss_for_module(module_id=mid, config=learner.config.get_config_for_module(mid),
                                            batch=batch, fwd_out=fwd)
    learner.compute_gradients({mid: total})
    got = torch.cat([p.grad.reshape(-1) for p in shared]).double()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
    # The combined step does not increase either task's loss to first order.
    assert float(got @ g1) >= -1e-9 and float(got @ g2) >= -1e-9


@pytest.mark.parametrize("architecture,combiner", [("separate_bottom", "pcgrad"), ("model_patch", "sum")])
def test_train_smoke_with_multitask_network_through_cli(ray_session, tmp_path, architecture, combiner, monkeypatch):
    """The architecture is the network on the EnvRunners and the Learner; the run checkpoints
    a module that `mto eval` loads back."""
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import main
    from orchestrator.runs.tracking import default_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    smoke = str(Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml")
    code = main(["train", smoke, "--no-live", "--run-dir", str(tmp_path), "--set", f"run_dir={tmp_path}",
                 "--set", "training.iterations=1", "--set", f"model.architecture={architecture}",
                 "--set", f"model.combiner={combiner}"])
    assert code == 0
    client = MlflowClient(default_tracking_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("mto").experiment_id])
    assert run.data.params["model.architecture"] == architecture
    assert np.isfinite(run.data.metrics["loss/policy_loss"])
    assert main(["eval", run.info.run_id, "--run-dir", str(tmp_path), "--episodes", "2"]) == 0


def test_learner_affinity_is_the_lookahead_on_rllibs_per_task_ppo_losses():
    """affinity[i -> j] = (L_j - L_j after an SGD step on L_i over the shared parameters) / |L_j|,
    with RLlib's own per-task PPO losses; the lookahead leaves the update itself untouched."""
    torch.manual_seed(0)
    lr = 0.05

    def build(affinity_every):
        torch.manual_seed(0)
        config = (
            PPOConfig()
            .environment(observation_space=OBS_SPACE, action_space=ACT_SPACE)
            .rl_module(rl_module_spec=multitask_rl_module_spec("shared_bottom", [16, 16], NUM_TASKS))
            .training(learner_class=MultiTaskPPOLearner, learner_config_dict={
                "combiner": "sum", "combiner_params": {}, "num_tasks": NUM_TASKS, "task_names": ["a", "b"],
                "affinity_every": affinity_every, "affinity_lr": lr}, use_kl_loss=False)
        )
        return config.build_learner()

    learner, plain = build(1), build(0)
    mid = "default_policy"
    module = learner.module[mid]
    batch = _ppo_batch(module)
    task = batch[Columns.OBS][:, :NUM_TASKS].argmax(-1)
    cfg = learner.config.get_config_for_module(mid)
    shared = list(module.network.shared_parameters())

    def task_losses():
        fwd = module.forward_train(batch)
        return [PPOTorchLearner.compute_loss_for_module(learner, module_id=mid, config=cfg,
                                                        batch={**batch, Columns.LOSS_MASK: task == t}, fwd_out=fwd)
                for t in range(NUM_TASKS)]

    before = [float(x.detach()) for x in task_losses()]
    expected = np.zeros((NUM_TASKS, NUM_TASKS))
    for i in range(NUM_TASKS):
        grads = torch.autograd.grad(task_losses()[i], shared)
        saved = [p.detach().clone() for p in shared]
        with torch.no_grad():
            for p, g in zip(shared, grads):
                p -= lr * g
            after = [float(x) for x in task_losses()]
            for p, s in zip(shared, saved):
                p.copy_(s)
        expected[i] = [(before[j] - after[j]) / abs(before[j]) for j in range(NUM_TASKS)]
    assert np.abs(expected).max() > 1e-4, "test premise: one lookahead step moves the losses"

    for current in (learner, plain):
        fwd = current.module[mid].forward_train(batch)
        total = current.compute_loss_for_module(module_id=mid, config=cfg, batch=batch, fwd_out=fwd)
        current.compute_gradients({mid: total})
    state = learner.affinity_state()
    assert state["task_names"] == ["a", "b"] and state["updates"] == 1
    np.testing.assert_allclose(np.array(state["matrix"]), expected, rtol=1e-4, atol=1e-7)
    assert plain.affinity_state() is None
    for p, q in zip(learner.module[mid].parameters(), plain.module[mid].parameters()):
        assert torch.equal(p, q)  # restored exactly
        assert torch.allclose(p.grad, q.grad)


def test_two_learners_average_before_combining_and_agree_on_affinity(ray_session):
    """num_learners=2 on CPU (gloo): the learner all-reduces the per-task gradients itself, so both
    copies of the network stay identical, and the affinity both measure is the same matrix."""
    from orchestrator.config import config_from_dict
    from orchestrator.rl.algorithm import build_algorithm, env_config_for, learner_affinity, on_every_learner

    cfg = config_from_dict({
        "name": "two_learners", "seed": 0,
        "task": {"tasks": ["log", "planks", "dirt"], "horizon": 30},
        "rl": {"num_env_runners": 0, "num_envs_per_env_runner": 16, "num_learners": 2, "train_batch_size": 256,
               "minibatch_size": 64, "num_epochs": 1},
        "model": {"hidden": [32], "architecture": "shared_bottom", "combiner": "pcgrad"},
    }, "test")
    env_config = env_config_for(cfg, ["log", "planks", "dirt"], None, None)
    algo = build_algorithm(cfg, env_config, affinity_every=1, affinity_lr=0.01)
    try:
        algo.train()
        flat = on_every_learner(
            algo, lambda learner: torch.cat([p.detach().reshape(-1) for p in learner.module["default_policy"].parameters()]))
        states = on_every_learner(algo, lambda learner: learner.affinity_state())
        assert learner_affinity(algo) == states[0]
    finally:
        algo.stop()
    assert len(flat) == 2 and torch.equal(flat[0], flat[1])
    assert states[0]["updates"] >= 2 and states[0]["task_names"] == ["log", "planks", "dirt"]
    np.testing.assert_allclose(np.array(states[0]["matrix"]), np.array(states[1]["matrix"]))
    assert np.isfinite(np.array(states[0]["matrix"])).any()


def test_learner_drops_a_task_whose_loss_overflows_and_counts_it(mgda_learner):
    config, learner = mgda_learner
    mid = "default_policy"
    module = learner.module[mid]
    batch = _ppo_batch(module)
    task = batch[Columns.OBS][:, :NUM_TASKS].argmax(-1)
    # Finite advantages whose sum overflows float32: task 1's loss is inf, task 0's rows are untouched
    # (an inf or nan in any row would reach every task's gradient through RLlib's masked mean: 0 * inf).
    batch[Postprocessing.ADVANTAGES] = torch.where(task == 1, torch.tensor(3e38), batch[Postprocessing.ADVANTAGES])
    shared = list(module.network.shared_parameters())
    expected = _task_gradient(learner, module, batch, task == 0)

    total = learner.compute_loss_for_module(module_id=mid, config=learner.config.get_config_for_module(mid),
                                            batch=batch, fwd_out=module.forward_train(batch))
    learner.compute_gradients({mid: total})

    got = torch.cat([p.grad.reshape(-1) for p in shared])
    assert torch.isfinite(got).all()
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)  # MGDA over the one task left
    metrics = learner.metrics.reduce()[mid]
    assert metrics["combiner/dropped_nonfinite/task_1"] == 1
    assert "combiner/dropped_nonfinite/task_0" not in metrics
