"""Offline CQL continues from its checkpoint exactly: 20 steps + a resume to 40 equal 40 steps in one go
(Q-network, target and Adam state, the batch builder's random state, counts and running cds thresholds)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from orchestrator.config import config_from_dict
from orchestrator.offline.collection import collect_part
from orchestrator.offline.training import SHARING_STATE_FILE, run_offline
from orchestrator.runs.checkpoints import checkpoint_dirs, checkpoint_problem
from orchestrator.runs.run_folder import STATE_FILE, TrainerState
from policies.cql import DiscreteCQL

TASKS = ["log", "planks", "stick"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for k, (policy, tasks) in enumerate([("scripted", ["stick"]), ("random", ["log", "planks"])]):
        source = {"policy": policy, "skill": 0.9, "checkpoint": None, "tasks": tasks, "transitions": 400}
        collect_part(str(root), f"w{k}", k, TASKS, source, horizon=20, num_envs=8, transitions=400,
                     row_group_size=128, seed=k)
    from tasks.simon_says.transitions import DatasetCard, read_transitions

    data, info = read_transitions(root)
    DatasetCard(task_names=TASKS, item_names=list(info.item_names), task_item_index=info.task_item_index.tolist(),
                obs_dim=info.obs_dim, num_actions=0, horizon=20, backend="techtree", seed=0, behaviour=[],
                transitions=len(data), episodes=0, transitions_per_task={}, collection_seconds=0.0,
                transitions_per_second=0.0).write(root)
    return root


def _cfg(dataset, steps: int):
    return config_from_dict({"name": "resume", "seed": 3, "task": {"tasks": TASKS, "horizon": 20},
                             "offline": {"dataset": str(dataset), "sharing": "cds", "gradient_steps": steps,
                                         "batch_size_per_task": 8, "shared_per_task": 8, "threshold_window": 64,
                                         "cds_warmup_steps": 5, "hidden": [16], "eval_every": 20,
                                         "eval_episodes_per_task": 1, "log_every": 10, "checkpoint_every": 20,
                                         "torch_threads": 1}}, "test")


def _weights(path) -> list[torch.Tensor]:
    return list(DiscreteCQL.load(path).q.state_dict().values())


def test_resume_continues_exactly_where_the_checkpoint_left_off(dataset, tmp_path) -> None:
    straight = run_offline(_cfg(dataset, 40), tmp_path / "straight", live=False, log=False, state=TrainerState())

    first_path = tmp_path / "resumed"
    first = run_offline(_cfg(dataset, 20), first_path, live=False, log=False, state=TrainerState())
    state = TrainerState.load(first_path / STATE_FILE)
    assert state.iteration == 20 and state.checkpoint.endswith("iter_000020")
    assert checkpoint_problem(first_path / "checkpoints" / "iter_000020") is None  # manifest written and intact
    with open(first_path / "checkpoints" / "iter_000020" / SHARING_STATE_FILE, "rb") as f:
        saved = pickle.load(f)["batches"]
    assert saved["steps"] == 20 and saved["running"]["filled"].tolist() == [64, 64, 64]

    resumed = run_offline(_cfg(dataset, 40), first_path, live=False, log=False, state=state)
    assert state.iteration == 40 and TrainerState.load(first_path / STATE_FILE).iteration == 40
    for a, b in zip(_weights(straight["checkpoint"]), _weights(resumed["checkpoint"])):
        assert torch.equal(a, b)
    # The counts and the thresholds' window carried on: identical to the uninterrupted run's.
    assert np.array_equal(resumed["sharing_matrix"], straight["sharing_matrix"], equal_nan=True)
    assert resumed["sharing_summary"] == straight["sharing_summary"]
    assert resumed["success_rate"] == straight["success_rate"]
    assert [p.name for p in checkpoint_dirs(first_path)] == ["iter_000020", "iter_000040"]
    assert first["mean_success"] >= 0.0
