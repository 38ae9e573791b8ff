"""CARE: attention over encoders from task metadata; usable behind the PPO and SAC RLModules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies import CARE, build_network
from tasks.metadata import hashed_bag_of_words, metadata_matrix


def _care(metadata, seed=0, **kw) -> CARE:
    torch.manual_seed(seed)
    return CARE(input_dim=5, output_dim=3, num_tasks=len(metadata), hidden=(8,), num_encoders=4,
                context_width=6, metadata=metadata, **kw)


def test_attention_weights_sum_to_one_and_follow_the_metadata():
    sentences = ["open a drawer", "push and close a drawer", "reach a goal position"]
    net = _care(metadata_matrix(sentences, dim=16))
    weights = net.attention_weights(torch.tensor([0, 1, 2, 0]))
    assert weights.shape == (4, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    assert bool((weights > 0).all())
    torch.testing.assert_close(weights[0], weights[3])  # same task, same weights (they depend on metadata only)
    assert not torch.allclose(weights[0], weights[2], atol=1e-4)  # different sentences, different mixture
    # Same parameters, another sentence for task 0: task 0's weights and outputs move, the others' do not.
    other = metadata_matrix(["rotate the faucet clockwise", *sentences[1:]], dim=16)
    net2 = _care(other)
    x = torch.randn(3, 5)
    task = torch.tensor([0, 1, 2])
    w1, w2 = net.attention_weights(task), net2.attention_weights(task)
    assert not torch.allclose(w1[0], w2[0], atol=1e-4)
    torch.testing.assert_close(w1[1:], w2[1:])
    y1, y2 = net(x, task), net2(x, task)
    assert not torch.allclose(y1[0], y2[0], atol=1e-5)
    torch.testing.assert_close(y1[1:], y2[1:])
    # The weights are a function of the metadata vector itself.
    vec = torch.as_tensor(hashed_bag_of_words("open a drawer", 16))[None]
    torch.testing.assert_close(net.attention_weights_for(vec)[0], weights[0])


def test_output_is_the_attention_weighted_encoder_mixture():
    net = _care(np.eye(2, dtype=np.float32))
    x, task = torch.randn(5, 5), torch.tensor([0, 1, 1, 0, 1])
    encoded = torch.stack([enc(x) for enc in net.encoders], 1)
    context = net.context(net.metadata[task])
    mixed = (net.attention_weights(task)[..., None] * encoded).sum(1)
    torch.testing.assert_close(net(x, task), net.head(torch.cat([mixed, context], -1)))


def test_parameters_all_shared_metadata_is_a_buffer_and_knobs_are_checked():
    net = build_network("care", input_dim=5, output_dim=2, num_tasks=3, hidden=(8,), num_encoders=2)
    assert net.task_parameters() == [] and net.parameter_counts()["task_specific"] == 0
    assert "metadata" in dict(net.named_buffers()) and "metadata" not in dict(net.named_parameters())
    torch.testing.assert_close(net.metadata, torch.eye(3))  # no metadata given: the one-hot task id
    with pytest.raises(ValueError, match="metadata must be"):
        build_network("care", input_dim=5, output_dim=2, num_tasks=3, metadata=[[0.0, 1.0]])
    with pytest.raises(ValueError, match="unknown knob"):
        build_network("care", input_dim=5, output_dim=2, num_tasks=3, encoders=2)


def test_care_behind_ppo_with_simon_says_sentences():
    """`model.architecture: care` on Simon Says: the PPO module gets one "obtain <item>" vector per task."""
    import gymnasium as gym
    from ray.rllib.core.columns import Columns

    from orchestrator.config import load_config
    from orchestrator.rl.algorithm import architecture_params
    from orchestrator.rl.multitask import MultiTaskPPOModule

    cfg = load_config("configs/smoke.yaml", ["model.architecture=care", "model.combiner=pcgrad"])
    names = list(cfg.task.tasks)
    params = architecture_params(cfg, names)
    np.testing.assert_allclose(params["metadata"][1], hashed_bag_of_words("obtain planks"), rtol=1e-6)
    module = MultiTaskPPOModule(
        observation_space=gym.spaces.Box(0, 1, (len(names) + 3,), np.float32), action_space=gym.spaces.Discrete(4),
        model_config={"architecture": "care", "hidden": [8], "num_tasks": len(names), "architecture_params": params})
    obs = torch.zeros(2, len(names) + 3)
    obs[0, 1] = obs[1, 3] = 1.0
    out = module.forward_train({Columns.OBS: obs})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (2, 4)
