"""The combiner contract: a [T x P] per-task gradient matrix (+ losses) -> one [P] gradient.

Any real-valued matrix is accepted.  A row that is not finite (inf or nan in
the gradient, or a non-finite loss when losses are given) is left out of that
step: it gets weight 0 and ``last_usable`` marks it False.  The solvers below
therefore only ever see finite numbers, and their tolerances are relative to
the scale of the gradients (the Gram matrix is normalised before it reaches
them), so 1e-30 and 1e30 gradients get the same weights as gradients of 1.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

import torch
from torch import Tensor


class GradientCombiner(abc.ABC):
    """Turns per-task gradients on the shared parameters into one update direction.

    ``grads[t]`` is task t's gradient (already averaged over data-parallel
    workers by the caller); ``losses[t]`` its loss value; ``task_ids`` says
    which of the combiner's ``num_tasks`` tasks the rows are, when some tasks
    had no samples in the batch (default: rows are tasks 0..T-1).
    ``last_weights`` holds the per-row weights of the last call when the
    result is a weighted sum of the rows (None otherwise), for logging: they
    are the weights the rows were actually multiplied by (in the gradients'
    dtype), 0 for a row that was left out.  ``last_usable`` marks the rows
    that were used (False: a non-finite gradient or loss; the row was
    dropped for this step).  Both are float64 / bool tensors, on the CPU for
    the combiners that solve on the host anyway (PCGrad, MGDA, Pareto MTL)
    and on the gradients' device for ``sum`` (so it needs no host sync).
    """

    name: str = ""

    def __init__(self, num_tasks: int) -> None:
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
        self.num_tasks = num_tasks
        self.last_weights: Tensor | None = None
        self.last_usable: Tensor | None = None

    def __call__(self, grads: Tensor, losses: Tensor | None = None, task_ids: Tensor | None = None) -> Tensor:
        if grads.dim() != 2:
            raise ValueError(f"grads must be a [tasks x params] matrix, got shape {tuple(grads.shape)}")
        if task_ids is None:
            if grads.shape[0] != self.num_tasks:
                raise ValueError(
                    f"grads has {grads.shape[0]} rows but the combiner was built for num_tasks={self.num_tasks}; "
                    "pass task_ids when only some tasks are present"
                )
            task_ids = torch.arange(self.num_tasks)
        task_ids = torch.as_tensor(task_ids, dtype=torch.long).cpu()
        if task_ids.numel() != grads.shape[0]:
            raise ValueError(f"task_ids has {task_ids.numel()} entries for {grads.shape[0]} gradient rows")
        if losses is not None:
            losses = torch.as_tensor(losses).detach().reshape(-1)
            if losses.numel() != grads.shape[0]:
                raise ValueError(f"losses has {losses.numel()} entries for {grads.shape[0]} gradient rows")
        return self.combine(grads, losses, task_ids)

    @abc.abstractmethod
    def combine(self, grads: Tensor, losses: Tensor | None, task_ids: Tensor) -> Tensor:
        """The method itself, on validated input; must leave non-finite rows out (see the module doc)."""

    @property
    def last_dropped(self) -> list[int]:
        """Row indexes the last call left out for non-finite values (reads ``last_usable``; a
        device->host copy when it lives on an accelerator)."""
        if self.last_usable is None:
            return []
        return [i for i, ok in enumerate(self.last_usable.tolist()) if not ok]

    def state_dict(self) -> dict[str, Any]:
        """Picklable state (rng, phase ...) for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""



SMALL_GRAM = 1 << 16  # T * P below this: numpy on one thread beats torch's thread pool


@dataclass
class GramInfo:
    """The Gram matrix of the usable rows, normalised, on the host (float64).

    ``gram * scale**2`` is ``G G^T`` on the usable rows; rows and columns of
    unusable rows are 0.  ``scale`` is the largest usable row norm (1 when
    all are 0), so ``gram``'s entries are at most 1 in magnitude whatever the
    gradients' scale, and every tolerance applied to it is relative.
    ``row_norms`` are the usable rows' L2 norms (0 for unusable rows), for the
    overflow check of `weighted_sum`; ``losses`` the host copy of the losses.
    """

    gram: np.ndarray
    usable: np.ndarray
    scale: float
    row_norms: np.ndarray
    losses: np.ndarray | None

    @property
    def usable_ids(self) -> np.ndarray:
        return np.flatnonzero(self.usable)


def _finfo(dtype: torch.dtype) -> torch.finfo:
    return torch.finfo(dtype if dtype.is_floating_point else torch.float64)


def gram_info(grads: Tensor, losses: Tensor | None = None) -> GramInfo:
    """``G G^T`` of the rows with finite gradients (and finite losses), normalised (see `GramInfo`).

    One device->host transfer in the usual case: the Gram matrix computed in
    the gradients' dtype, plus the losses, in a single copy.  Only when its
    diagonal says a row is non-finite, overflows, or is so small that its
    squares lose precision (< P * tiny / eps, e.g. an all-zero row) is it
    recomputed from rows divided by their largest entry (a second transfer,
    in that step only).
    """
    grads = grads.detach()
    t, p = grads.shape
    host_losses = None
    if grads.device.type == "cpu" and grads.numel() <= SMALL_GRAM:
        # A tiny torch matmul with >1 intra-op thread measured 1-5 ms on a busy
        # 2-core machine (thread wake-ups) against microseconds in numpy.
        if losses is not None:
            host_losses = losses.detach().double().cpu().numpy()
        return _robust_gram(grads.double().numpy(), host_losses)
    gram = grads @ grads.T
    parts = [gram.reshape(-1).double()]
    if losses is not None:
        parts.append(losses.detach().reshape(-1).to(gram.device, torch.float64))
    packed = torch.cat(parts).cpu().numpy()
    gram_host = packed[: t * t].reshape(t, t)
    if losses is not None:
        host_losses = packed[t * t :]
    diag = np.diagonal(gram_host)
    info = _finfo(grads.dtype)
    if np.isfinite(gram_host).all() and (diag >= p * info.tiny / info.eps).all():
        usable = np.isfinite(host_losses) if host_losses is not None else np.ones(t, dtype=bool)
        return _normalised(gram_host, usable, host_losses)
    # Rare path: non-finite, overflowing or tiny rows.  Scale each row by its
    # largest entry (computed in float64) so nothing overflows or underflows.
    row_max = grads.abs().amax(dim=1).double().cpu().numpy()  # nan stays nan, inf inf
    usable = np.isfinite(row_max)
    if host_losses is not None:
        usable &= np.isfinite(host_losses)
    nonzero = np.flatnonzero(usable & (row_max > 0))
    scaled_gram = np.zeros((t, t))
    if nonzero.size:
        index = torch.as_tensor(nonzero, device=grads.device)
        divisor = torch.as_tensor(row_max[nonzero], device=grads.device)
        rows = grads.index_select(0, index).double() / divisor[:, None]
        scaled_gram[np.ix_(nonzero, nonzero)] = (rows @ rows.T).cpu().numpy()
    return _from_scaled(scaled_gram, row_max, usable, host_losses)


def _robust_gram(g: np.ndarray, losses: np.ndarray | None) -> GramInfo:
    """`gram_info` for a float64 host matrix: rows divided by their largest entry first."""
    t = g.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        row_max = np.abs(g).max(axis=1) if g.shape[1] else np.zeros(t)
    usable = np.isfinite(row_max)
    if losses is not None:
        usable &= np.isfinite(losses)
    nonzero = np.flatnonzero(usable & (row_max > 0))
    scaled_gram = np.zeros((t, t))
    if nonzero.size:
        rows = g[nonzero] / row_max[nonzero, None]
        scaled_gram[np.ix_(nonzero, nonzero)] = rows @ rows.T
    return _from_scaled(scaled_gram, row_max, usable, losses)


def _from_scaled(scaled_gram: np.ndarray, row_max: np.ndarray, usable: np.ndarray, losses: np.ndarray | None) -> GramInfo:
    """GramInfo from the Gram matrix of rows divided by their max entries ``row_max``."""
    m = np.where(usable, row_max, 0.0)
    top = float(m.max()) if m.size else 0.0
    if top <= 0.0:
        return GramInfo(np.zeros_like(scaled_gram), usable, 1.0, np.zeros(len(usable)), losses)
    r = m / top  # in [0, 1]: the products below cannot overflow
    gram = scaled_gram * r[:, None] * r[None, :]
    norms = np.sqrt(np.maximum(np.diagonal(gram), 0.0))
    scale = float(norms.max()) if norms.max() > 0 else 1.0
    gram = gram / (scale * scale)
    return GramInfo(gram, usable, top * scale, norms * top, losses)


def _normalised(gram: np.ndarray, usable: np.ndarray, losses: np.ndarray | None) -> GramInfo:
    gram = np.where(usable[:, None] & usable[None, :], gram, 0.0)
    norms = np.sqrt(np.maximum(np.diagonal(gram), 0.0))
    scale = float(norms.max()) if norms.size and norms.max() > 0 else 1.0
    return GramInfo(gram / (scale * scale), usable, scale, norms, losses)


def weighted_sum(weights: np.ndarray | Tensor, grads: Tensor, usable: np.ndarray | None = None,
                 row_norms: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """(sum_t weights[t] grads[t] over the usable rows, the weights actually used).

    Computed in the gradients' dtype and device when the weights fit it (no
    weight overflows or flushes to 0, and sum |w_t| ||g_t|| stays finite);
    otherwise in float64 and cast back, e.g. PCGrad weights of 1e60 on a 1e-30
    row.  Unusable rows are never touched (0 * inf would be nan).  The weights
    returned are float64 on the CPU, 0 for unusable rows.
    """
    w = np.array(weights.cpu().numpy() if isinstance(weights, Tensor) else weights, dtype=np.float64)
    if usable is None:
        usable = np.ones(w.shape[0], dtype=bool)
    w[~usable] = 0.0
    dtype = grads.dtype
    info = _finfo(dtype)
    cast = torch.as_tensor(w).to(dtype)
    cast_back = cast.double().numpy()
    fits = bool(np.isfinite(cast_back).all() and ((cast_back != 0) | (w == 0)).all())
    if fits and row_norms is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            fits = bool(np.sum(np.abs(cast_back) * row_norms) < info.max)
    ids = np.flatnonzero(usable)
    if ids.size == 0:
        return torch.zeros(grads.shape[1], dtype=dtype, device=grads.device), torch.as_tensor(w)
    all_rows = ids.size == w.shape[0]
    rows = grads if all_rows else grads.index_select(0, torch.as_tensor(ids, device=grads.device))
    if fits:
        used = cast if all_rows else cast[torch.as_tensor(ids)]
        out = used.to(grads.device) @ rows
        w = cast_back
    else:
        out = (torch.as_tensor(w[ids], device=grads.device) @ rows.double()).to(dtype)
    return out, torch.as_tensor(w)
