"""Multi-task SAC inside RLlib's SAC learner: per-task losses, per-task temperatures, combiners."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.algorithms.sac import SACConfig
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from orchestrator.rl.sac import MultiTaskSACLearner, MultiTaskSACModule, task_ids

STATE, NUM_TASKS, ACTION_DIM, BATCH = 6, 2, 2, 48
OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (STATE + NUM_TASKS,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
MID = "default_policy"


def _learner(architecture: str = "shared_bottom", combiner: str = "pcgrad", multitask: bool = True,
             per_task_alpha: bool = True):
    config = (
        SACConfig()
        .environment(observation_space=OBS_SPACE, action_space=ACT_SPACE)
        # A numeric target entropy: "auto" reads the module spec, which a standalone learner lacks.
        .training(twin_q=True, target_entropy=-float(ACTION_DIM))
        .learners(learner_class=MultiTaskSACLearner, learner_config_dict={
            "num_tasks": NUM_TASKS, "task_names": ["a", "b"], "per_task_alpha": per_task_alpha,
            "multitask_network": multitask, "combiner": combiner, "combiner_params": {}})
    )
    if multitask:
        config = config.rl_module(rl_module_spec=RLModuleSpec(module_class=MultiTaskSACModule, model_config={
            "architecture": architecture, "hidden": [16, 16], "num_tasks": NUM_TASKS, "architecture_params": {}}))
    else:
        config = config.rl_module(model_config={"fcnet_hiddens": [16, 16]})
    return config.build_learner()


def _batch(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    tasks = rng.permutation(np.array([0] * 30 + [1] * 18))
    onehot = np.eye(NUM_TASKS, dtype=np.float32)[tasks]

    def obs():
        return torch.as_tensor(np.concatenate([rng.normal(size=(BATCH, STATE)).astype(np.float32), onehot], 1))

    return {
        Columns.OBS: obs(), Columns.NEXT_OBS: obs(),
        Columns.ACTIONS: torch.as_tensor(rng.uniform(-1, 1, (BATCH, ACTION_DIM)), dtype=torch.float32),
        Columns.REWARDS: torch.as_tensor(rng.normal(size=BATCH), dtype=torch.float32),
        Columns.TERMINATEDS: torch.zeros(BATCH, dtype=torch.bool),
        "n_step": torch.ones(BATCH), "weights": torch.ones(BATCH),
    }


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads]).double()


def test_sac_pcgrad_equals_hand_projection_of_per_task_actor_gradients():
    torch.manual_seed(0)
    learner = _learner()
    module = learner.module[MID]
    alphas = torch.tensor([0.5, 2.0])
    with torch.no_grad():  # two different temperatures, so the per-task alpha is visible in the loss
        learner.curr_log_alpha[MID].copy_(alphas.log())
    actor = module.pi_encoder.network
    shared = [p for p in actor.shared_parameters() if p.requires_grad]
    for seed in range(20):  # a batch whose two actor gradients conflict (the projection then acts)
        batch = _batch(seed)
        torch.manual_seed(seed)
        fwd = module.forward_train(batch)
        task = task_ids(batch[Columns.OBS], NUM_TASKS)
        # By hand: SAC's actor loss on each task's rows, E[alpha_t log pi(a~|s) - Q(s, a~)] (Haarnoja et al.).
        losses = [(alphas[t] * fwd["logp_resampled"][task == t] - fwd["q_curr"][task == t]).mean()
                  for t in range(NUM_TASKS)]
        g1, g2 = (_flat(torch.autograd.grad(loss, shared, retain_graph=True)) for loss in losses)
        if float(g1 @ g2) < 0:
            break
    assert float(g1 @ g2) < 0, "test premise: some batch makes the task gradients conflict"
    # PCGrad (Yu et al. 2020), two tasks: each gradient loses its component along the other.
    expected = (g1 - (g1 @ g2) / (g2 @ g2) * g2) + (g2 - (g2 @ g1) / (g1 @ g1) * g1)

    total = learner.compute_loss_for_module(module_id=MID, config=learner.config.get_config_for_module(MID),
                                            batch=batch, fwd_out=fwd)
    learner.compute_gradients({MID: total})
    got = _flat(p.grad for p in shared)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(got, g1 + g2, rtol=1e-3)  # the projection changed the step
    # Neither task's actor loss increases to first order (PCGrad's guarantee for two tasks).
    assert float(got @ g1) >= -1e-9 and float(got @ g2) >= -1e-9
    # Each temperature got its own task's gradient: d/dlog_alpha_t of -mean(log_alpha_t (logp + H)).
    target = float(learner.target_entropy[MID])
    expected_alpha = [-(fwd["logp_resampled"][task == t].detach() + target).mean() for t in range(NUM_TASKS)]
    np.testing.assert_allclose(learner.curr_log_alpha[MID].grad.numpy(), torch.stack(expected_alpha).numpy(),
                               rtol=1e-5)


def test_rllib_default_network_loss_equals_rllib_batch_loss_with_one_temperature():
    """With RLlib's default SAC network and one shared temperature, the per-task decomposition is
    exactly RLlib's own SAC loss on the whole batch (same forward pass)."""
    torch.manual_seed(1)
    learner = _learner(multitask=False, per_task_alpha=False)
    module = learner.module[MID]
    batch = _batch(3)
    fwd = module.forward_train(batch)
    cfg = learner.config.get_config_for_module(MID)
    ours = learner.compute_loss_for_module(module_id=MID, config=cfg, batch=batch, fwd_out=fwd)
    ours_parts = {k: v.detach().clone() for (_, k), v in learner._temp_losses.items()}
    learner._temp_losses.clear()
    rllib = super(MultiTaskSACLearner, learner).compute_loss_for_module(module_id=MID, config=cfg, batch=batch,
                                                                        fwd_out=fwd)
    rllib_parts = {k: v.detach() for (_, k), v in learner._temp_losses.items()}
    assert torch.allclose(ours, rllib, rtol=1e-5, atol=1e-6)
    for key, value in rllib_parts.items():
        assert torch.allclose(ours_parts[key], value, rtol=1e-5, atol=1e-6), key


def test_per_task_temperatures_move_apart():
    """One update: a task whose policy is below the target entropy raises its temperature, the other lowers it."""
    torch.manual_seed(2)
    learner = _learner(architecture="separate_bottom", combiner="sum")
    module = learner.module[MID]
    batch = _batch(4)
    fwd = module.forward_train(batch)
    task = task_ids(batch[Columns.OBS], NUM_TASKS)
    # Make task 0's log-probs high (low entropy) and task 1's low: alpha_0 should rise, alpha_1 fall.
    fwd["logp_resampled"] = torch.where(task == 0, fwd["logp_resampled"] + 50.0, fwd["logp_resampled"] - 50.0)
    total = learner.compute_loss_for_module(module_id=MID, config=learner.config.get_config_for_module(MID),
                                            batch=batch, fwd_out=fwd)
    grads = learner.compute_gradients({MID: total})
    learner.apply_gradients(grads)
    alphas = learner.alphas(MID)
    assert alphas["a"] > 1.0 > alphas["b"]
    assert math.isclose(alphas["a"] * alphas["b"], 1.0, rel_tol=1e-3)  # Adam: equal-size steps, opposite signs


def test_temperatures_survive_a_learner_checkpoint(tmp_path):
    """RLlib's SAC does not checkpoint log-alpha; ours travels with the optimizer state (`--resume`)."""
    torch.manual_seed(5)
    trained, fresh = _learner(), _learner()
    with torch.no_grad():
        trained.curr_log_alpha[MID].copy_(torch.tensor([0.25, 3.0]).log())
    trained.save_to_path(str(tmp_path / "learner"))
    fresh.restore_from_path(str(tmp_path / "learner"))
    assert fresh.alphas(MID) == pytest.approx({"a": 0.25, "b": 3.0})
    assert "log_alpha" not in trained.get_state(components="rl_module")  # weight sync stays module-only


def test_module_forward_inference_is_squashed_gaussian_inputs():
    torch.manual_seed(3)
    module = MultiTaskSACModule(observation_space=OBS_SPACE, action_space=ACT_SPACE, inference_only=True,
                                model_config={"architecture": "care", "hidden": [16], "num_tasks": NUM_TASKS,
                                              "architecture_params": {"num_encoders": 3}})
    assert not hasattr(module, "qf_encoder")  # EnvRunners get the actor only
    out = module.forward_inference({Columns.OBS: _batch(0)[Columns.OBS]})[Columns.ACTION_DIST_INPUTS]
    assert out.shape == (BATCH, 2 * ACTION_DIM)
    dist = module.get_inference_action_dist_cls().from_logits(out)
    actions = dist.sample()
    assert actions.shape == (BATCH, ACTION_DIM) and bool((actions.abs() <= 1).all())


@pytest.mark.parametrize("architecture", ["mlp", "shared_bottom"])
def test_sac_refuses_pareto_mtl_and_the_action_mask(architecture, tmp_path):
    from orchestrator.config import ConfigError, load_config

    sets = [f"model.architecture={architecture}"]
    if architecture != "mlp":
        with pytest.raises(ConfigError, match=r"model.combiner: pareto_mtl .*SAC's per-task actor losses"):
            load_config("configs/mt10_sac.yaml", sets + ["model.combiner=pareto_mtl"])
    with pytest.raises(ConfigError, match=r"task.action_mask: the action mask is a discrete-action option"):
        load_config("configs/mt10_sac.yaml", sets + ["task.action_mask=true"])
    # The lean connectors draw SAC's squashed Gaussian too (tests/test_sac_replay.py).
    assert load_config("configs/mt10_sac.yaml", sets + ["rl.lean_connectors=true"]).rl.lean_connectors


def _rllib_loss_task_by_task(learner, batch, fwd):
    """The reference: RLlib's own SAC loss called on each task's rows with that task's temperature
    (what the learner computed before the batched loss)."""
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

    cfg = learner.config.get_config_for_module(MID)
    task = task_ids(batch[Columns.OBS], NUM_TASKS)
    log_alpha = learner.curr_log_alpha[MID]
    logged, learner.metrics = learner.metrics, MetricsLogger(root=False)
    per_task = {}
    try:
        for t in range(NUM_TASKS):
            rows = torch.nonzero(task == t).flatten()
            learner.curr_log_alpha[MID] = log_alpha[t:t + 1]
            super(MultiTaskSACLearner, learner).compute_loss_for_module(
                module_id=MID, config=cfg, batch={k: v[rows] for k, v in batch.items()},
                fwd_out={k: v[rows] if v.dim() else v for k, v in fwd.items()})
            per_task[t] = {k: v.detach() for (_, k), v in learner._temp_losses.items()}
            learner._temp_losses.clear()
    finally:
        learner.metrics, learner.curr_log_alpha[MID] = logged, log_alpha
    return per_task, torch.bincount(task, minlength=NUM_TASKS).double()


@pytest.mark.parametrize("multitask", [True, False], ids=["combiner_per_task_losses", "sum_batch_loss"])
def test_batched_loss_equals_rllib_loss_task_by_task(multitask):
    """One pass over the batch gives each task's loss exactly as RLlib's SAC loss on that task's rows
    (with its own temperature); the summed path weights them by n_t / N, the temperatures by 1."""
    torch.manual_seed(6)
    learner = _learner(architecture="separate_bottom", combiner="sum") if multitask else _learner(multitask=False)
    with torch.no_grad():
        learner.curr_log_alpha[MID].copy_(torch.tensor([0.3, 1.7]).log())
    module = learner.module[MID]
    batch = _batch(7)
    fwd = module.forward_train(batch)
    expected, counts = _rllib_loss_task_by_task(learner, batch, fwd)
    cfg = learner.config.get_config_for_module(MID)
    total = learner.compute_loss_for_module(module_id=MID, config=cfg, batch=batch, fwd_out=fwd)
    keys = ["qf_loss", "qf_twin_loss", "policy_loss"]
    if multitask:
        got = learner._task_losses[MID]
        for key in keys:
            for t in range(NUM_TASKS):
                assert torch.allclose(got[key][t].double(), expected[t][key].double(), rtol=1e-5, atol=1e-6), (key, t)
    else:
        weights = counts / counts.sum()
        for key in keys:
            want = sum(weights[t] * expected[t][key].double() for t in range(NUM_TASKS))
            assert torch.allclose(learner._temp_losses[(MID, key)].double(), want, rtol=1e-5, atol=1e-6), key
    alpha_loss = learner._temp_losses[(MID, "alpha_loss")].double()
    assert torch.allclose(alpha_loss, sum(expected[t]["alpha_loss"].double() for t in range(NUM_TASKS)), rtol=1e-5)
    assert torch.isfinite(total)


def test_mt_sac_network_is_the_papers_mlp_on_state_one_hot_and_action():
    """`model.architecture: mlp` is MT-SAC's network: one MLP per part reading the whole observation
    (state and task one-hot), the Q networks also the action; not RLlib's multi-stream Q encoder."""
    module = MultiTaskSACModule(observation_space=OBS_SPACE, action_space=ACT_SPACE, model_config={
        "architecture": "mlp", "hidden": [16, 16], "num_tasks": NUM_TASKS, "architecture_params": {}, "twin_q": True})
    obs_dim = STATE + NUM_TASKS

    def count(part):
        return sum(p.numel() for p in part.parameters())

    # Hand count: (in*16 + 16) + (16*16 + 16) + (16*out + out).
    assert count(module.pi_encoder) == obs_dim * 16 + 16 + 272 + 16 * 2 * ACTION_DIM + 2 * ACTION_DIM
    for q in (module.qf_encoder, module.qf_twin_encoder):
        assert count(q) == (obs_dim + ACTION_DIM) * 16 + 16 + 272 + 16 + 1
    module.make_target_networks()  # the learner does this when it builds the module
    batch = _batch(1)
    out = module.forward_train(batch)
    # Changing only the one-hot changes the actor's output: the task is in the MLP's input.
    flipped = dict(batch, **{Columns.OBS: torch.cat([batch[Columns.OBS][:, :STATE],
                                                     batch[Columns.OBS][:, STATE:].flip(-1)], 1)})
    assert not torch.allclose(module.forward_inference(flipped)[Columns.ACTION_DIST_INPUTS],
                              module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS])
    assert out["q_curr"].shape == (BATCH,)
