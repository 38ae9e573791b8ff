"""The min-norm point in the convex hull of vectors, from their Gram matrix.

min_a || sum_i a_i v_i ||^2  s.t. a >= 0, sum a = 1   (Sener & Koltun 2018, Alg. 2 subproblem)

Two vectors: exact closed form.  More: accelerated projected gradient on the
simplex, stopped on the Frank-Wolfe duality gap; K is tiny (tasks +
constraints), so this costs microseconds next to a backward pass.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def min_norm_two(v1v1: float, v1v2: float, v2v2: float) -> float:
    """Weight gamma on v1 minimising ||gamma v1 + (1 - gamma) v2||^2 (closed form, clipped to [0, 1])."""
    denom = v1v1 - 2.0 * v1v2 + v2v2
    if denom <= 1e-20:  # v1 == v2: every gamma gives the same point
        return 0.5
    return float(np.clip((v2v2 - v1v2) / denom, 0.0, 1.0))


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {a >= 0, sum a = 1} (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, v.size + 1)
    rho = np.nonzero(u - css / k > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1.0), 0.0)


def min_norm_weights(gram: Tensor | np.ndarray, max_iter: int = 2000, tol: float = 1e-9) -> Tensor:
    """Simplex weights of the min-norm point of the vectors whose Gram matrix is ``gram``."""
    m = np.asarray(gram.cpu().numpy() if isinstance(gram, Tensor) else gram, dtype=np.float64)
    k = m.shape[0]
    if k == 1:
        return torch.ones(1, dtype=torch.float64)
    if k == 2:
        g = min_norm_two(m[0, 0], m[0, 1], m[1, 1])
        return torch.tensor([g, 1.0 - g], dtype=torch.float64)
    scale = max(np.trace(m) / k, 1e-30)
    m = m / scale  # the weights do not depend on the scale; the step size does
    # Start from the best pair (exact), as in Sener & Koltun's solver.
    best, a = np.inf, np.full(k, 1.0 / k)
    for i in range(k):
        for j in range(i + 1, k):
            g = min_norm_two(m[i, i], m[i, j], m[j, j])
            value = g * g * m[i, i] + 2 * g * (1 - g) * m[i, j] + (1 - g) ** 2 * m[j, j]
            if value < best:
                best, a = value, np.zeros(k)
                a[i], a[j] = g, 1.0 - g
    step = 1.0 / max(np.linalg.eigvalsh(m)[-1], 1e-12)
    y, a_prev, t = a.copy(), a.copy(), 1.0
    for _ in range(max_iter):
        a = project_to_simplex(y - step * (m @ y))
        ma = m @ a
        gap = float(a @ ma - ma.min())  # Frank-Wolfe gap >= suboptimality
        # Relative gap, or absolute in units of the mean squared norm (the
        # hull may contain 0: Pareto-stationary points, where relative never holds).
        if gap <= tol * float(a @ ma) or gap <= 1e-12:
            break
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y = a + ((t - 1) / t_next) * (a - a_prev)
        a_prev, t = a, t_next
    return torch.as_tensor(a, dtype=torch.float64)
