"""Supervised multi-task training on Ray Train (``TorchTrainer``).

Each worker holds the whole (small) dataset, takes its strided share of every
global batch, computes per-task losses, and calls
``policies.apply_multitask_backward`` with a ``torch.distributed`` all-reduce:
per-task gradients are averaged over workers *before* the combiner runs, so
PCGrad / MGDA / Pareto MTL see the same matrix as on one process and every
worker takes the same step (no DDP wrapper needed).  After each epoch every
split is evaluated (per task loss, and accuracy for classification), rank 0
checkpoints, and the metrics reach the driver both through
``ray.train.report`` and live through a queue that feeds ``on_epoch_end``.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
import torch.nn.functional as F
from ray.train import Checkpoint, CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.util.queue import Empty, Queue

from curricula.affinity import TaskAffinity
from policies import apply_multitask_backward, build_combiner, build_network, torch_distributed_allreduce
from policies.affinity import lookahead_losses
from tasks.supervised import SplitArrays, SupervisedDataset, read_dataset

CHECKPOINT_FILE = "checkpoint.pt"
EVAL_CHUNK = 4096
# What a training state holds besides tensors: numpy arrays (PCGrad's RandomState state) and their dtypes.
# torch's weights-only unpickler rebuilds only these, so loading a checkpoint cannot run code.
_NUMPY_STATE_TYPES = [np.ndarray, np.ndarray.__reduce__(np.zeros(1))[0], np.dtype,
                      *(getattr(np.dtypes, name) for name in np.dtypes.__all__)]


def load_training_state(path: Path) -> dict[str, Any]:
    """A state written by `torch.save` in a training worker, read with ``weights_only=True``."""
    with torch.serialization.safe_globals(_NUMPY_STATE_TYPES):
        return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class SupervisedResult:
    """What a supervised multi-task run produced, on the driver."""

    metrics_history: list[dict[str, float]]  # one dict per epoch, in order
    task_names: tuple[str, ...]
    parameter_counts: dict[str, int]
    checkpoint_path: str | None  # latest checkpoint directory
    storage_path: str
    ray_result: Any = field(repr=False, default=None)  # ray.train.Result

    @property
    def final_metrics(self) -> dict[str, float]:
        return self.metrics_history[-1] if self.metrics_history else {}

    @property
    def metrics_dataframe(self):  # -> pandas.DataFrame
        import pandas as pd

        return pd.DataFrame(self.metrics_history)


def _input_dim(dataset: SupervisedDataset, trunk: str) -> int | tuple[int, int, int]:
    if trunk not in ("mlp", "conv"):
        raise ValueError(f"architecture_params.trunk must be 'mlp' or 'conv', got {trunk!r}")
    if trunk == "conv":
        if len(dataset.input_shape) != 3:
            raise ValueError(
                f"architecture_params.trunk='conv' needs image inputs (C, H, W); "
                f"dataset {dataset.name!r} has input_shape {dataset.input_shape}"
            )
        return tuple(dataset.input_shape)  # type: ignore[return-value]
    return dataset.input_dim


def restrict_tasks(dataset: SupervisedDataset, tasks: Sequence[str] | None) -> SupervisedDataset:
    """The dataset with only ``tasks`` (in that order, ids renumbered 0..); all of it for None.

    One network per group trains on such a subset."""
    if tasks is None:
        return dataset
    names = dataset.task_space.names
    unknown = [t for t in tasks if t not in names]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be distinct names of this dataset; unknown {unknown}; valid tasks: {list(names)}")
    old_ids = np.array([names.index(t) for t in tasks])
    new_id = np.full(len(names), -1)
    new_id[old_ids] = np.arange(len(tasks))
    splits = {}
    for split, arrays in dataset.splits.items():
        keep = np.isin(arrays.task, old_ids)
        splits[split] = SplitArrays(x=arrays.x[keep], task=new_id[arrays.task[keep]], y=arrays.y[keep],
                                    example_id=arrays.example_id[keep])
    return replace(dataset, task_space=dataset.task_space.subset(list(tasks)), splits=splits)


def _build(config: dict[str, Any], dataset: SupervisedDataset):
    arch_params = dict(config["architecture_params"])
    trunk = arch_params.pop("trunk", "mlp")
    torch.manual_seed(config["seed"])  # identical initial weights on every worker
    model = build_network(
        config["architecture"],
        _input_dim(dataset, trunk),
        dataset.output_dim,
        dataset.num_tasks,
        hidden=tuple(config["hidden"]),
        **arch_params,
    )
    combiner = build_combiner(config["combiner"], dataset.num_tasks, **config["combiner_params"])
    return model, combiner


def _task_losses(out: torch.Tensor, task: torch.Tensor, y: torch.Tensor, target: str, num_tasks: int):
    """Per-task mean loss (None where the task has no rows) and the per-task row counts."""
    counts = torch.bincount(task, minlength=num_tasks)
    losses: list[torch.Tensor | None] = []
    for t in range(num_tasks):
        mask = task == t
        if not int(counts[t]):
            losses.append(None)
        elif target == "classification":
            losses.append(F.cross_entropy(out[mask], y[mask]))
        else:
            losses.append(F.mse_loss(out[mask, 0], y[mask]))
    return losses, counts


@torch.no_grad()
def _evaluate(model, arrays, target: str, num_tasks: int, rank: int, world: int, device) -> torch.Tensor:
    """[3, T] sums over this worker's rows: loss * n, correct, n (all-reduced by the caller)."""
    totals = torch.zeros(3, num_tasks, dtype=torch.float64, device=device)
    rows = np.arange(rank, len(arrays), world)
    for start in range(0, len(rows), EVAL_CHUNK):
        idx = rows[start : start + EVAL_CHUNK]
        x = torch.as_tensor(arrays.x[idx], device=device)
        task = torch.as_tensor(arrays.task[idx], device=device)
        y = torch.as_tensor(arrays.y[idx], device=device)
        out = model(x, task)
        if target == "classification":
            loss = F.cross_entropy(out, y, reduction="none")
            correct = (out.argmax(dim=1) == y).double()
        else:
            loss = (out[:, 0] - y) ** 2
            correct = torch.zeros_like(loss, dtype=torch.float64)
        totals[0].index_add_(0, task, loss.double())
        totals[1].index_add_(0, task, correct)
        totals[2].index_add_(0, task, torch.ones_like(loss, dtype=torch.float64))
    return totals


def _split_metrics(split: str, totals: torch.Tensor, names: Sequence[str], target: str) -> dict[str, float]:
    metrics: dict[str, float] = {}
    loss_sum, correct, n = totals.cpu().tolist()
    losses, accuracies = [], []
    for t, name in enumerate(names):
        if n[t] == 0:
            continue
        losses.append(loss_sum[t] / n[t])
        metrics[f"{split}/loss/{name}"] = losses[-1]
        if target == "classification":
            accuracies.append(correct[t] / n[t])
            metrics[f"{split}/accuracy/{name}"] = accuracies[-1]
    if losses:
        metrics[f"{split}/loss"] = float(np.mean(losses))
    if accuracies:
        metrics[f"{split}/accuracy"] = float(np.mean(accuracies))
    return metrics


def run_epochs(
    config: dict[str, Any],
    dataset: SupervisedDataset,
    report: Callable[[dict[str, float], dict[str, Any]], None],
    *,
    rank: int = 0,
    world: int = 1,
    device: torch.device | str = "cpu",
    allreduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    resume_state: dict[str, Any] | None = None,
) -> None:
    """The training loop itself, for one worker: Ray Train's workers and
    ``train_supervised_local`` both run it.  ``report(metrics, state)`` gets
    every epoch's metrics (identical on all workers) and the checkpoint state.

    ``config["tasks"]`` (optional) trains on those tasks only.  ``config["affinity_every"]``
    (optional, steps) measures TAG lookahead affinity every that many steps with an SGD
    step of ``config["affinity_lr"]`` (default: lr); the running average is reported as
    ``affinity/<source>/<task>`` each epoch (and kept in the checkpoint state).
    """
    import torch.distributed as dist

    dataset = restrict_tasks(dataset, config.get("tasks"))
    names = dataset.task_space.names
    affinity_every = int(config.get("affinity_every") or 0)
    affinity_lr = float(config.get("affinity_lr") or config["lr"])
    affinity = TaskAffinity(names) if affinity_every else None
    affinity_time = 0.0  # seconds spent measuring affinity, summed over the run
    model, combiner = _build(config, dataset)
    model.to(device)
    if allreduce is not None:  # belt and braces: same weights everywhere even if seeding differs
        for p in model.state_dict().values():
            dist.broadcast(p, src=0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config["lr"])

    start_epoch = 0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        combiner.load_state_dict(resume_state["combiner"])
        start_epoch = resume_state["epoch"] + 1
        if affinity is not None and resume_state.get("affinity"):
            affinity.load_state_dict(resume_state["affinity"])

    train = dataset.split("train")
    target = dataset.target
    batch_size = int(config["batch_size"])
    steps_per_epoch = math.ceil(len(train) / batch_size)
    for epoch in range(start_epoch, config["epochs"]):
        started = time.perf_counter()
        model.train()
        # Same permutation on every worker; each takes a strided share of each global batch.
        order = np.random.default_rng([config["seed"], epoch]).permutation(len(train))
        weight_sums = np.zeros(len(names))
        steps, has_weights = 0, False
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size][rank::world]
            if len(idx):
                x = torch.as_tensor(train.x[idx], device=device)
                task = torch.as_tensor(train.task[idx], device=device)
                y = torch.as_tensor(train.y[idx], device=device)
                losses, counts = _task_losses(model(x, task), task, y, target, len(names))
            else:  # still join the collective: a worker with no rows adds zeros
                losses, counts = [None] * len(names), torch.zeros(len(names), dtype=torch.long)
            # Counted over the run (not per epoch), so `affinity_every` means the same for any batch size.
            if affinity is not None and (epoch * steps_per_epoch + steps) % affinity_every == 0:
                measured = time.perf_counter()

                def recompute(x=x if len(idx) else None, task=task if len(idx) else None, y=y if len(idx) else None):
                    if x is None:
                        return [None] * len(names)
                    return _task_losses(model(x, task), task, y, target, len(names))[0]

                before, after = lookahead_losses(model.shared_parameters(), losses, recompute, affinity_lr, allreduce)
                affinity.update(before, after)
                affinity_time += time.perf_counter() - measured
            optimizer.zero_grad(set_to_none=True)
            stats = apply_multitask_backward(model, losses, combiner, allreduce=allreduce, task_sample_counts=counts)
            optimizer.step()
            steps += 1
            if stats.task_weights is not None:
                has_weights = True
                weight_sums += np.nan_to_num(np.asarray(stats.task_weights))
        train_time = time.perf_counter() - started

        model.eval()
        metrics: dict[str, float] = {"epoch": epoch, "steps": steps, "epoch_time_s": train_time}
        metrics["train/rows_per_s"] = len(train) / max(train_time, 1e-9)
        for split in dataset.splits:
            totals = _evaluate(model, dataset.split(split), target, len(names), rank, world, device)
            if allreduce is not None:
                dist.all_reduce(totals)
            metrics.update(_split_metrics(split, totals, names, target))
        if has_weights:
            for name, w in zip(names, weight_sums / max(steps, 1)):
                metrics[f"combiner/weight/{name}"] = float(w)
        if affinity is not None:
            metrics["affinity_time_s"] = affinity_time  # cumulative since this process started the run
            for (i, j), value in np.ndenumerate(affinity.matrix()):
                if i != j:
                    metrics[f"affinity/{names[i]}/{names[j]}"] = float(value)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "combiner": combiner.state_dict(),
            "epoch": epoch,
            "task_names": list(names),
            "affinity": affinity.state_dict() if affinity is not None else None,
        }
        report(metrics, state)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker body (one per worker): run_epochs with checkpoints and reports."""
    import torch.distributed as dist

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    distributed = dist.is_available() and dist.is_initialized() and world > 1
    dataset: SupervisedDataset = ray.get(config["dataset_ref"])

    resume_state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume_state = load_training_state(Path(folder) / CHECKPOINT_FILE)

    def report(metrics: dict[str, float], state: dict[str, Any]) -> None:
        if rank != 0:
            ray.train.report(metrics)  # every worker must report; only rank 0 checkpoints
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / CHECKPOINT_FILE)
            if config["queue"] is not None:
                config["queue"].put(metrics)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))

    run_epochs(
        config,
        dataset,
        report,
        rank=rank,
        world=world,
        device=ray.train.torch.get_device(),
        allreduce=torch_distributed_allreduce if distributed else None,
        resume_state=resume_state,
    )


def _config(
    dataset: SupervisedDataset,
    architecture: str,
    combiner: str,
    hidden: Sequence[int],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    combiner_params: dict[str, Any] | None,
    architecture_params: dict[str, Any] | None,
    tasks: Sequence[str] | None = None,
    affinity_every: int | None = None,
    affinity_lr: float | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Validated loop config and the network's parameter counts (bad names fail here, on the driver)."""
    for field_name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{field_name} must be a positive int, got {value!r}")
    if not (isinstance(lr, float | int) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if affinity_every is not None and (not isinstance(affinity_every, int) or affinity_every < 0):
        raise ValueError(f"affinity_every must be a non-negative int (0 or None: off), got {affinity_every!r}")
    if affinity_lr is not None and not (affinity_lr > 0 and math.isfinite(affinity_lr)):
        raise ValueError(f"affinity_lr must be a positive number, got {affinity_lr!r}")
    config: dict[str, Any] = {
        "architecture": architecture,
        "combiner": combiner,
        "hidden": list(hidden),
        "architecture_params": dict(architecture_params or {}),
        "combiner_params": dict(combiner_params or {}),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": float(lr),
        "seed": int(seed),
        "queue": None,
        "tasks": list(tasks) if tasks is not None else None,
        "affinity_every": affinity_every,
        "affinity_lr": affinity_lr,
    }
    model, _ = _build(config, restrict_tasks(dataset, tasks))
    return config, model.parameter_counts()


def train_supervised_local(
    *,
    dataset_path: str | os.PathLike,
    architecture: str,
    combiner: str,
    hidden: Sequence[int],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    combiner_params: dict[str, Any] | None = None,
    architecture_params: dict[str, Any] | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    tasks: Sequence[str] | None = None,
    affinity_every: int | None = None,
    affinity_lr: float | None = None,
) -> SupervisedResult:
    """The same training loop in this process, without Ray (benchmarks, quick checks); no checkpoints.

    ``tasks``: train on these tasks only; ``affinity_every``/``affinity_lr``: see ``run_epochs``."""
    dataset = read_dataset(dataset_path)
    config, counts = _config(
        dataset, architecture, combiner, hidden, epochs, batch_size, lr, seed, combiner_params, architecture_params,
        tasks, affinity_every, affinity_lr,
    )
    history: list[dict[str, float]] = []

    def report(metrics: dict[str, float], state: dict[str, Any]) -> None:
        history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(metrics)

    run_epochs(config, dataset, report)
    return SupervisedResult(history, restrict_tasks(dataset, tasks).task_space.names, counts, None, "")


def train_supervised(
    *,
    dataset_path: str | os.PathLike,
    architecture: str,
    combiner: str,
    hidden: Sequence[int],
    num_workers: int,
    use_gpu: bool,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    storage_path: str | os.PathLike,
    combiner_params: dict[str, Any] | None = None,
    architecture_params: dict[str, Any] | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    run_name: str = "supervised",
    num_checkpoints_to_keep: int | None = 2,
    tasks: Sequence[str] | None = None,
    affinity_every: int | None = None,
    affinity_lr: float | None = None,
) -> SupervisedResult:
    """Train one multi-task network on a Parquet dataset with Ray Train; returns per-epoch metrics.

    ``architecture_params`` go to ``build_network`` (plus ``trunk``: "mlp" (default,
    flat inputs) or "conv" (image datasets)); ``combiner_params`` to
    ``build_combiner``.  ``batch_size`` is the global batch, split across
    ``num_workers``.  ``on_epoch_end(metrics)`` runs on the driver after every
    epoch, while training continues.  Rerunning with the same ``storage_path``
    and ``run_name`` resumes from the latest checkpoint.  ``tasks`` trains on
    those tasks only (one network per group); ``affinity_every`` / ``affinity_lr``
    measure task affinity while training (see ``run_epochs``).
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
    dataset = read_dataset(dataset_path)
    config, counts = _config(
        dataset, architecture, combiner, hidden, epochs, batch_size, lr, seed, combiner_params, architecture_params,
        tasks, affinity_every, affinity_lr,
    )

    queue = Queue(maxsize=0)
    config["queue"] = queue
    config["dataset_ref"] = ray.put(dataset)  # workers need no shared filesystem
    storage = str(Path(storage_path).expanduser().resolve())
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            checkpoint_config=CheckpointConfig(num_to_keep=num_checkpoints_to_keep),
        ),
    )

    history: list[dict[str, float]] = []
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised on the driver's main thread
            outcome["error"] = exc

    # fit() blocks; run it aside so on_epoch_end (e.g. MLflow logging) runs here, live.
    thread = threading.Thread(target=fit, name="supervised-fit", daemon=True)
    thread.start()
    try:
        while thread.is_alive() or not queue.empty():
            try:
                metrics = queue.get(timeout=0.5)
            except Empty:
                continue
            history.append(metrics)
            if on_epoch_end is not None:
                on_epoch_end(metrics)
        thread.join()
    finally:
        queue.shutdown()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    return SupervisedResult(
        metrics_history=history,
        task_names=restrict_tasks(dataset, tasks).task_space.names,
        parameter_counts=counts,
        checkpoint_path=result.checkpoint.path if result.checkpoint else None,
        storage_path=storage,
        ray_result=result,
    )
