"""Per-task backward passes, the data-parallel average, the combiner, and ``.grad``.

Usable anywhere a torch loss lives: a plain loop, a Ray Train worker, or an
RLlib ``TorchLearner.compute_gradients`` override that has per-task losses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import weakref
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from policies.combiners.base import GradientCombiner

AllReduce = Callable[[Tensor], Tensor]


@dataclass
class MultitaskBackwardStats:
    """What one combined backward did, for logging (plain floats / lists)."""

    task_losses: list[float]  # after the data-parallel average; nan for absent tasks
    task_grad_norms: list[float]  # ||g_t|| on the shared parameters
    combined_grad_norm: float
    task_weights: list[float] | None  # weights the combiner actually used (0 for a dropped task), when it has them
    present: list[bool]  # task had samples (on any worker)
    # Task left out of this step for a non-finite value: its loss on this worker
    # (with task_sample_counts: samples but a nan/inf loss; without: an inf loss),
    # or its data-parallel averaged gradient, on the shared parameters or its own.
    dropped_nonfinite: list[bool] = field(default_factory=list)

    @property
    def dropped_nonfinite_tasks(self) -> list[int]:
        """Task ids with ``dropped_nonfinite`` set (log ``combiner/dropped_nonfinite/<task>`` += 1)."""
        return [t for t, dropped in enumerate(self.dropped_nonfinite) if dropped]


def torch_distributed_allreduce(buffer: Tensor) -> Tensor:
    """Mean over the ``torch.distributed`` process group (gloo or nccl), in place."""
    import torch.distributed as dist

    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.div_(dist.get_world_size())


_BUFFERS: "weakref.WeakKeyDictionary[nn.Module, Tensor]" = weakref.WeakKeyDictionary()


def _reusable_buffer(model: nn.Module, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A flat scratch tensor kept per model (uninitialised; callers fill every slot they read)."""
    buffer = _BUFFERS.get(model)
    if buffer is None or buffer.numel() != size or buffer.dtype != dtype or buffer.device != device:
        buffer = torch.empty(size, dtype=dtype, device=device)
        _BUFFERS[model] = buffer
    return buffer


def _shared_and_task_parameters(model: nn.Module, num_tasks: int) -> tuple[list[Tensor], list[list[Tensor]]]:
    if not hasattr(model, "shared_parameters") or not hasattr(model, "task_parameters"):
        raise TypeError(
            f"{type(model).__name__} must provide shared_parameters() and task_parameters(task) "
            "(every policies.architectures network does)"
        )
    shared = [p for p in model.shared_parameters() if p.requires_grad]
    per_task = [[p for p in model.task_parameters(t) if p.requires_grad] for t in range(num_tasks)]
    return shared, per_task


def summed_backward(model: nn.Module, task_losses: Sequence[Tensor | None]) -> bool:
    """The `sum` combiner's step in one backward pass: ``.grad`` = d/dtheta of sum_t L_t.

    Equal to `apply_multitask_backward` with the `sum` combiner and no all-reduce whenever every
    loss and gradient is finite (a task's own parameters only reach its own loss, so they get its
    gradient unchanged; an absent task's get None, so Adam leaves them alone), for one backward
    pass instead of T. Returns False and leaves ``.grad`` alone when no task is present or a loss
    or the summed gradient is not finite: the caller then takes `apply_multitask_backward`, which
    finds the task and drops it.
    """
    present = [t for t, loss in enumerate(task_losses) if loss is not None and loss.requires_grad]
    if not present:
        return False
    total = torch.stack([task_losses[t].reshape(()) for t in present]).sum()
    if not bool(torch.isfinite(total)):
        return False
    params = [p for p in model.parameters() if p.requires_grad]
    grads = list(torch.autograd.grad(total, params, retain_graph=True, allow_unused=True))
    used = [g for g in grads if g is not None]
    # A sum is finite unless some entry is not (or it overflows): one cheap screen.
    if used and not bool(torch.isfinite(torch.stack([g.sum() for g in used]).sum())):
        return False
    absent = {id(p) for t in set(range(len(task_losses))) - set(present) for p in model.task_parameters(t)}
    for p, g in zip(params, grads):
        p.grad = None if id(p) in absent else g
    return True


def apply_multitask_backward(
    model: nn.Module,
    task_losses: Tensor | Sequence[Tensor | None],
    combiner: GradientCombiner,
    allreduce: AllReduce | None = None,
    task_sample_counts: Tensor | Sequence[int] | None = None,
    shared_parameters: Sequence[Tensor] | None = None,
    task_parameters: Sequence[Sequence[Tensor]] | None = None,
) -> MultitaskBackwardStats:
    """Write combined gradients into ``.grad`` (overwriting) of ``model``'s parameters.

    1. For each task t with samples: ``torch.autograd.grad(task_losses[t], shared + task t's params)``
       (T backward passes through the retained graph).
    2. If ``allreduce`` is given (data-parallel): average the whole [T x P]
       matrix, the task-specific gradients and the losses over workers in one
       call, weighted by each worker's ``task_sample_counts`` so the result equals
       the gradient of the global batch's per-task mean losses.  Averaging BEFORE
       combining keeps nonlinear combiners (PCGrad, MGDA, Pareto MTL) correct.
    3. ``combiner`` turns the [T x P] matrix into the shared parameters' gradient;
       task-specific parameters get their own task's gradient unchanged.

    Non-finite values never reach ``.grad``: a task whose loss is nan/inf is
    left out before its backward pass, and a task whose averaged gradient
    (shared row or its own parameters') has a nan/inf is dropped from the step
    by the combiner (its own parameters get no gradient: None, or zeros where
    the decision stays on the device).  ``MultitaskBackwardStats.dropped_nonfinite``
    says which, read in the same single device->host transfer as the other
    statistics.

    ``task_losses[t]`` should be task t's mean loss over its samples in the local
    batch, best given as a list of scalar tensors with ``None`` for a task without
    samples (a count of 0, a nan loss or a loss that does not require grad also
    mark it absent); such a task is left out and its task-specific ``.grad`` set
    to None.  A stacked [T] tensor is accepted only without nan/inf entries:
    backpropagating through ``torch.stack`` multiplies the other entries' zero
    gradients by their local derivatives, and 0 * nan would poison every task.
    ``allreduce(buffer)`` must return the mean of ``buffer`` over workers
    (``torch_distributed_allreduce`` does that for ``torch.distributed``).

    ``shared_parameters`` / ``task_parameters`` (a list per task) override the
    model's own split, e.g. inside an RLlib ``TorchLearner`` whose RLModule
    wraps a ``policies`` network plus a value head that every task shares:
    ``shared_parameters=net.shared_parameters() + list(value_head.parameters())``.
    Under DDP, pass ``allreduce``: ``torch.autograd.grad`` does not fire DDP's
    gradient hooks, so nothing else averages these gradients.
    """
    if isinstance(task_losses, Tensor):
        if task_losses.requires_grad and not bool(torch.isfinite(task_losses).all()):
            raise ValueError(
                "task_losses is a stacked tensor with nan/inf entries, which would poison every "
                "task's gradient; pass a list of per-task scalar losses with None for absent tasks"
            )
        loss_list: list[Tensor | None] = list(task_losses.reshape(-1).unbind())
    else:
        loss_list = list(task_losses)
    num_tasks = len(loss_list)
    if num_tasks == 0:
        raise ValueError("task_losses is empty")
    if shared_parameters is None or task_parameters is None:
        model_shared, model_per_task = _shared_and_task_parameters(model, num_tasks)
    shared = [p for p in (shared_parameters if shared_parameters is not None else model_shared) if p.requires_grad]
    if task_parameters is not None and len(task_parameters) != num_tasks:
        raise ValueError(f"task_parameters has {len(task_parameters)} lists for {num_tasks} task losses")
    per_task = (
        [[p for p in ps if p.requires_grad] for ps in task_parameters] if task_parameters is not None else model_per_task
    )
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32

    # Which tasks have a usable loss: one device->host sync for all of them
    # (a per-task .item() stalls a GPU pipeline T times).
    candidates = [t for t, l in enumerate(loss_list) if l is not None and l.requires_grad]
    detached = [loss_list[t].detach().reshape(()) for t in candidates]
    checks = [l.isfinite() for l in detached]
    if task_sample_counts is not None:
        counts = torch.as_tensor(task_sample_counts, dtype=dtype, device=device).reshape(-1)
        if counts.numel() != num_tasks:
            raise ValueError(f"task_sample_counts has {counts.numel()} entries for {num_tasks} task losses")
        has_samples = [counts[t] > 0 for t in candidates]
    else:
        # Without counts a nan loss is how an empty task looks (mean of nothing);
        # an infinite one had samples.
        has_samples = [~l.isnan() for l in detached]
    flags = torch.stack([torch.stack(checks), torch.stack(has_samples)]).tolist() if checks else [[], []]
    local_present = [False] * num_tasks
    dropped_loss = [False] * num_tasks
    for t, ok, has in zip(candidates, *flags):
        local_present[t] = bool(ok and has)
        dropped_loss[t] = bool(has and not ok)
    present_local = torch.tensor(local_present, dtype=dtype).to(device, non_blocking=True)
    counts = present_local if task_sample_counts is None else counts * present_local

    shared_sizes = [p.numel() for p in shared]
    task_sizes = [sum(p.numel() for p in ps) for ps in per_task]
    p_shared = sum(shared_sizes)
    # One flat buffer: [T x P shared grads | task t's own grads ... | losses | counts],
    # so the data-parallel average is a single collective.  It is reused between
    # calls: a fresh multi-megabyte allocation per step costs page faults that
    # showed up as ~30% of a step in benchmarks/mtl_step_cost.py.
    size = num_tasks * p_shared + sum(task_sizes) + 2 * num_tasks
    buffer = _reusable_buffer(model, size, dtype, device)
    grad_matrix = buffer[: num_tasks * p_shared].view(num_tasks, p_shared)
    task_offsets = [num_tasks * p_shared + sum(task_sizes[:t]) for t in range(num_tasks)]
    loss_slot = buffer[size - 2 * num_tasks : size - num_tasks]
    count_slot = buffer[size - num_tasks :]
    loss_slot.zero_()
    count_slot.copy_(counts)
    weighted = allreduce is not None  # per-task means need count weights only across workers

    last = max((t for t in range(num_tasks) if local_present[t]), default=-1)
    for t in range(num_tasks):
        task_slice = buffer[task_offsets[t] : task_offsets[t] + task_sizes[t]]
        if not local_present[t]:
            grad_matrix[t].zero_()
            task_slice.zero_()
            continue
        inputs = shared + per_task[t]
        grads = torch.autograd.grad(loss_list[t], inputs, retain_graph=t != last, allow_unused=True)
        flat = [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, inputs)]
        if p_shared:
            torch.cat(flat[: len(shared)], out=grad_matrix[t])
        if task_sizes[t]:
            torch.cat(flat[len(shared) :], out=task_slice)
        loss_slot[t] = loss_list[t].detach().reshape(())
        if weighted:
            grad_matrix[t].mul_(counts[t])
            task_slice.mul_(counts[t])
            loss_slot[t] *= counts[t]

    if allreduce is not None:
        buffer = allreduce(buffer)
        grad_matrix = buffer[: num_tasks * p_shared].view(num_tasks, p_shared)
        loss_slot = buffer[size - 2 * num_tasks : size - num_tasks]
        count_slot = buffer[size - num_tasks :]
    present_mask = count_slot > 0
    # Without an all-reduce nothing new is known: skip the device->host sync.
    present = present_mask.tolist() if allreduce is not None else local_present
    present_ids = [t for t in range(num_tasks) if present[t]]
    if weighted:
        # Weighted mean: sum_w n_wt x_wt / sum_w n_wt (the 1/world_size cancels).
        inverse = torch.where(present_mask, 1.0 / count_slot.clamp_min(1e-30), torch.zeros_like(count_slot))
    else:
        inverse = present_mask.to(dtype)
    mean_losses = loss_slot * inverse

    # A task whose own parameters' averaged gradient is not finite is dropped
    # as a whole: its loss is shown to the combiner as nan, which leaves its
    # row out.  On the CPU one pass over all task-specific gradients decides
    # (per task only when something is off); on an accelerator the per-task
    # flags stay on the device (no sync).
    combiner_losses = mean_losses[present_ids]
    own_ok: list[bool] | Tensor | None = None
    checked = [t for t in present_ids if task_sizes[t]]
    if checked:

        def own_finite(t: int) -> Tensor:
            return torch.isfinite(buffer[task_offsets[t] : task_offsets[t] + task_sizes[t]]).all()

        if device.type == "cpu":
            # A sum is finite unless some entry is not (or it overflows): a cheap screen,
            # the exact per-task test runs only when it fails.
            region = buffer[num_tasks * p_shared : num_tasks * p_shared + sum(task_sizes)]
            if not bool(torch.isfinite(region.sum())):
                own_ok = [not task_sizes[t] or bool(own_finite(t)) for t in present_ids]
                bad = [i for i, ok in enumerate(own_ok) if not ok]
                combiner_losses = combiner_losses.clone()
                combiner_losses[bad] = float("nan")
        else:
            always = torch.ones((), dtype=torch.bool, device=device)
            own_ok = torch.stack([own_finite(t) if task_sizes[t] else always for t in present_ids])
            combiner_losses = torch.where(own_ok, combiner_losses, torch.full_like(combiner_losses, float("nan")))

    # Statistics stay on the device until one final transfer.
    norms = torch.full((num_tasks,), float("nan"), dtype=dtype, device=device)
    combined_norm = torch.zeros(1, dtype=dtype, device=device)
    # usable[i]: present task present_ids[i] was used (a Python list, or a device tensor read at the end)
    usable: list[bool] | Tensor = [True] * len(present_ids) if own_ok is None else own_ok
    combiner_weights: Tensor | None = None
    if p_shared and present_ids:
        rows = grad_matrix if len(present_ids) == num_tasks else grad_matrix[present_ids]
        if weighted:
            rows = rows * inverse[present_ids, None]
        norms[present_ids] = torch.linalg.vector_norm(rows, dim=1)
        combined = combiner(rows, combiner_losses, torch.tensor(present_ids))
        if combined.data_ptr() == rows.data_ptr() or combined._base is not None:
            combined = combined.clone()  # never hand out views of the reusable buffer
        combined_norm = torch.linalg.vector_norm(combined).reshape(1)
        for p, g in zip(shared, torch.split(combined, shared_sizes)):
            p.grad = g.view_as(p)
        combiner_weights = combiner.last_weights
        if combiner.last_usable is not None:
            usable = combiner.last_usable if combiner.last_usable.device.type != "cpu" else combiner.last_usable.tolist()
    else:
        for p in shared:
            p.grad = torch.zeros_like(p) if present_ids else None

    # Task-specific parameters: their own task's averaged gradient, unchanged
    # (copied out, since the buffer is reused by the next call); nothing for a
    # dropped task.
    zero = torch.zeros((), dtype=dtype, device=device)
    position = {t: i for i, t in enumerate(present_ids)}
    for t in range(num_tasks):
        offset = task_offsets[t]
        for p in per_task[t]:
            if present[t] and (isinstance(usable, Tensor) or usable[position[t]]):
                grad = buffer[offset : offset + p.numel()].view_as(p)
                if isinstance(usable, Tensor):  # decided on the device: mask (one copy, like clone)
                    grad = torch.where(usable[position[t]], grad, zero)
                    p.grad = grad.mul_(inverse[t]) if weighted else grad
                else:
                    p.grad = grad * inverse[t] if weighted else grad.clone()
            else:
                p.grad = None
            offset += p.numel()

    # One device->host transfer for every statistic (device-side masks/weights included).
    on_device = [mean_losses, norms, combined_norm]
    if isinstance(usable, Tensor):
        on_device.append(usable.to(device=device, dtype=dtype))
    weights_on_device = combiner_weights is not None and combiner_weights.device.type != "cpu"
    if weights_on_device:
        on_device.append(combiner_weights.to(device=device, dtype=dtype))
    numbers = torch.cat(on_device).tolist()
    cursor = 2 * num_tasks + 1
    if isinstance(usable, Tensor):
        usable = [bool(x) for x in numbers[cursor : cursor + len(present_ids)]]
        cursor += len(present_ids)
    weights = None
    if combiner_weights is not None:
        used = numbers[cursor:] if weights_on_device else combiner_weights.tolist()
        weights = [float("nan")] * num_tasks
        for t, w in zip(present_ids, used):
            weights[t] = w
    dropped = list(dropped_loss)
    for t, ok in zip(present_ids, usable):
        dropped[t] = dropped[t] or not ok
    return MultitaskBackwardStats(
        task_losses=[x if present[t] else float("nan") for t, x in enumerate(numbers[:num_tasks])],
        task_grad_norms=numbers[num_tasks : 2 * num_tasks],
        combined_grad_norm=numbers[2 * num_tasks],
        task_weights=weights,
        present=present,
        dropped_nonfinite=dropped,
    )
