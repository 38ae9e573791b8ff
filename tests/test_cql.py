"""Discrete conservative Q-learning: the regulariser and targets on hand-computed cases, and that it is conservative."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policies.cql import CQLBatch, CQLConfig, DiscreteCQL, cql_regulariser, td_targets


def test_cql_regulariser_known_answer() -> None:
    q = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    reg = cql_regulariser(q, torch.tensor([0, 2]))
    # log(e^1 + e^2 + e^3) - 1 and log(3) - 0
    expected = [math.log(math.e + math.e**2 + math.e**3) - 1.0, math.log(3.0)]
    assert reg.tolist() == pytest.approx(expected, abs=1e-6)
    assert expected[0] == pytest.approx(2.4076059644, abs=1e-9)


def test_td_targets_double_q_known_answer() -> None:
    online = torch.tensor([[0.0, 5.0], [9.0, 1.0]])
    target = torch.tensor([[2.0, 3.0], [4.0, 8.0]])
    reward, terminated = torch.tensor([1.0, 0.0]), torch.tensor([True, False])
    # Row 0 terminal: just r. Row 1: online picks action 0, target values it at 4 -> 0.5 * 4.
    assert td_targets(reward, terminated, online, target, 0.5, double_q=True).tolist() == [1.0, 2.0]
    # Plain (not double) Q takes the target's own max: 0.5 * 8.
    assert td_targets(reward, terminated, online, target, 0.5, double_q=False).tolist() == [1.0, 4.0]


def test_cql_keeps_unseen_actions_below_the_data_action() -> None:
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend on the shared cores
    # One state, 4 actions; the data only ever takes action 1 (reward 0.5, terminal).
    n = 64
    obs = np.ones((n, 3), dtype=np.float32)
    batch = CQLBatch.from_numpy(obs=obs, action=np.ones(n, dtype=np.int64), reward=np.full(n, 0.5, np.float32),
                                next_obs=obs, terminated=np.ones(n, dtype=bool))
    agent = DiscreteCQL(3, 4, CQLConfig(alpha=1.0, lr=2e-2, hidden=(16,)), seed=0)
    first = agent.update(batch)
    for _ in range(150):
        last = agent.update(batch)
    q = agent.q_values(obs[:1])[0]
    assert q.argmax() == 1 and q[1] == pytest.approx(0.5, abs=0.15)
    assert last["cql_regulariser"] < first["cql_regulariser"]
    # The regulariser pushes the never-taken actions well below the data action.
    assert (np.delete(q, 1) < q[1] - 0.5).all()


def test_save_load_and_bad_config(tmp_path) -> None:
    agent = DiscreteCQL(5, 3, CQLConfig(hidden=(8,)), seed=1)
    obs = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    back = DiscreteCQL.load(agent.save(tmp_path / "q.pt"))
    assert np.array_equal(back.q_values(obs), agent.q_values(obs))
    assert back.forward_inference({"obs": obs})["action_dist_inputs"].shape == (4, 3)
    with pytest.raises(ValueError, match=r"invalid \['gamma', 'tau'\]"):
        CQLConfig(gamma=1.5, tau=0.0)
