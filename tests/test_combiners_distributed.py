"""Data-parallel correctness: 2 gloo workers == 1 process on the same global batch.

The global batch is split unevenly (5 / 7 rows) and task 2 has no rows on
worker 0, so only the count-weighted average of per-task gradients BEFORE
combining gives the single-process answer.
"""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from policies import apply_multitask_backward, build_combiner, build_network, torch_distributed_allreduce

CASES = [
    ("shared_bottom", "sum"),
    ("shared_bottom", "pcgrad"),
    ("separate_bottom", "mgda"),
    ("model_patch", "pareto_mtl"),
    ("soft_modular", "mgda"),
]
NUM_TASKS = 3


def global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 6, generator=g)
    task = torch.tensor([0, 1, 0, 1, 0, 2, 1, 2, 0, 2, 1, 0])  # rows 0-4: no task 2
    y = torch.randn(12, 2, generator=g)
    return x, task, y


def combined_gradients(arch: str, combiner_name: str, rows: slice, allreduce) -> dict[str, torch.Tensor]:
    """One combined backward on ``rows`` of the global batch; returns every .grad."""
    torch.manual_seed(0)  # same initial weights in every process
    net = build_network(arch, 6, 2, NUM_TASKS, hidden=(8, 8))
    combiner = build_combiner(combiner_name, NUM_TASKS, **({"seed": 3} if combiner_name == "pcgrad" else {}))
    x, task, y = (t[rows] for t in global_batch())
    out = net(x, task)
    counts = torch.bincount(task, minlength=NUM_TASKS)
    losses = [((out[task == t] - y[task == t]) ** 2).mean() if counts[t] else None for t in range(NUM_TASKS)]
    apply_multitask_backward(net, losses, combiner, allreduce=allreduce, task_sample_counts=counts)
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        rows = slice(0, 5) if rank == 0 else slice(5, 12)
        results = {case: combined_gradients(*case, rows, torch_distributed_allreduce) for case in CASES}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_worker_results() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        return [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(2)]


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_two_gloo_workers_match_one_process(two_worker_results: list[dict], case: tuple[str, str]) -> None:
    single = combined_gradients(*case, slice(0, 12), allreduce=None)
    for rank in range(2):
        distributed = two_worker_results[rank][case]
        assert distributed.keys() == single.keys()
        for name, grad in single.items():
            assert torch.allclose(distributed[name], grad, atol=1e-5, rtol=1e-4), (rank, name)
