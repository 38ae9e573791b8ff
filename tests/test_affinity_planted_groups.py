"""TAG in the supervised loop: affinity measured while co-training recovers planted groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from curricula.grouping import choose_groupings
from orchestrator.supervised.training import restrict_tasks, train_supervised_local
from tasks.supervised import read_dataset, write_dataset


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Tiny matmuls: extra intra-op threads only contend on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def affinity_from_metrics(metrics: dict[str, float], names) -> np.ndarray:
    return np.array([[metrics.get(f"affinity/{a}/{b}", 0.0) for b in names] for a in names])


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_chosen_grouping_is_the_planted_one(tmp_path, seed: int) -> None:
    # 3 groups of 3 tasks; the groups' targets conflict (pairwise cosine -1/2).
    path = write_dataset("grouped_regression", tmp_path, seed=seed)
    data = read_dataset(path)
    names = data.task_space.names
    result = train_supervised_local(
        dataset_path=path, architecture="soft_modular", combiner="sum", hidden=(32, 32), epochs=30,
        batch_size=1024, lr=1e-2, seed=seed, affinity_every=8, affinity_lr=1e-3,
    )
    affinity = affinity_from_metrics(result.final_metrics, names)
    best = choose_groupings(affinity, names, max_groups=3)[0]
    planted = {n: g for g, group in enumerate(data.metadata["groups"]) for n in group}
    assert adjusted_rand_score([planted[n] for n in names], best.labels(names)) == 1.0
    assert sorted(map(sorted, best.groups)) == sorted(map(sorted, data.metadata["groups"]))
    assert result.final_metrics["affinity_time_s"] > 0


def test_training_on_a_subset_of_tasks(tmp_path) -> None:
    path = write_dataset("grouped_regression", tmp_path, seed=0, samples_per_task=40, val_per_task=10, test_per_task=10)
    subset = restrict_tasks(read_dataset(path), ["task_04", "task_01"])
    assert subset.task_space.names == ("task_04", "task_01")
    assert set(np.unique(subset.split("train").task)) == {0, 1} and len(subset.split("train")) == 80
    result = train_supervised_local(
        dataset_path=path, architecture="shared_bottom", combiner="sum", hidden=(8,), epochs=1,
        batch_size=32, lr=1e-2, seed=0, tasks=["task_04", "task_01"],
    )
    assert result.task_names == ("task_04", "task_01")
    assert {k for k in result.final_metrics if k.startswith("val/loss/")} == {"val/loss/task_04", "val/loss/task_01"}
    with pytest.raises(ValueError, match=r"unknown \['task_99'\]; valid tasks"):
        restrict_tasks(read_dataset(path), ["task_99"])
