"""The min-norm point in the convex hull of vectors, from their Gram matrix.

min_a || sum_i a_i v_i ||^2  s.t. a >= 0, sum a = 1   (Sener & Koltun 2018, Alg. 2 subproblem)

Two vectors: exact closed form.  More: Wolfe's minimum-norm-point algorithm
(exact, active set); K is tiny (tasks + constraints), so this costs well under
a millisecond next to a backward pass.

Every tolerance is relative to the largest squared norm (the Gram matrix's
largest diagonal entry), so the weights do not depend on the vectors' scale:
1e-11 and 1e11 gradients get the same answer as gradients of 1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


# ||v1 - v2||^2 computed from Gram entries carries a round-off of a few eps
# times ||v1||^2 + ||v2||^2; below this multiple of it, v1 and v2 are equal.
_SAME_POINT_RTOL = 64 * float(np.finfo(np.float64).eps)


def min_norm_two(v1v1: float, v1v2: float, v2v2: float) -> float:
    """Weight gamma on v1 minimising ||gamma v1 + (1 - gamma) v2||^2 (closed form, clipped to [0, 1])."""
    denom = v1v1 - 2.0 * v1v2 + v2v2
    if not denom > _SAME_POINT_RTOL * (v1v1 + v2v2):  # v1 == v2 up to round-off: every gamma gives the same point
        return 0.5
    return float(np.clip((v2v2 - v1v2) / denom, 0.0, 1.0))


def min_norm_weights(gram: Tensor | np.ndarray, max_iter: int = 200, tol: float = 1e-12) -> Tensor:
    """Simplex weights of the min-norm point of the vectors whose Gram matrix is ``gram``.

    ``gram`` must be finite (ValueError otherwise); ``tol`` is relative to its
    largest diagonal entry.

    Two vectors: the closed form.  More: Wolfe's (1976) minimum-norm-point
    algorithm, an active-set method that is exact after finitely many steps
    (typically about K), working on the Gram matrix alone:

        start at the shortest vector; repeat:
            j = argmin_i v_i . x;  stop if v_j . x >= ||x||^2 (x is optimal)
            S <- S + {j}
            repeat: mu = affine min-norm point of S (sum mu = 1)
                    if mu > 0: x <- mu, break
                    else step from x towards mu until a weight hits 0; drop it
    """
    m = np.asarray(gram.cpu().numpy() if isinstance(gram, Tensor) else gram, dtype=np.float64)
    if not np.isfinite(m).all():
        raise ValueError("min_norm_weights needs a finite Gram matrix (drop non-finite vectors first)")
    k = m.shape[0]
    if k == 1:
        return torch.ones(1, dtype=torch.float64)
    if k == 2:
        g = min_norm_two(m[0, 0], m[0, 1], m[1, 1])
        return torch.tensor([g, 1.0 - g], dtype=torch.float64)
    scale = float(np.max(np.diag(m)))
    if scale > 0:
        m = m / scale  # the weights do not depend on the scale; the tolerances do
    else:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)  # all vectors are 0
    lam = np.zeros(k)
    lam[int(np.argmin(np.diag(m)))] = 1.0
    support = [int(np.argmin(np.diag(m)))]
    for _ in range(max_iter):
        g = m @ lam
        j = int(np.argmin(g))
        if g[j] >= lam @ g - tol or j in support:
            break
        support.append(j)
        for _ in range(k + 1):
            try:
                mu = _affine_min_norm(m, support)
            except np.linalg.LinAlgError:  # cannot happen on finite input; keep the current point
                break
            if (mu > tol).all():
                lam[:] = 0.0
                lam[support] = mu
                break
            # Move from lam towards mu until the first weight reaches 0, then drop it.
            current = lam[support]
            falling = mu <= tol
            theta = float(np.min(current[falling] / np.maximum(current[falling] - mu[falling], 1e-300)))
            lam[support] = current + min(max(theta, 0.0), 1.0) * (mu - current)
            keep = [i for i in support if lam[i] > tol]
            lam[[i for i in support if i not in keep]] = 0.0
            support = keep
    lam = np.maximum(lam, 0.0)
    total = lam.sum()
    if not (np.isfinite(total) and total > 0):  # defensive: fall back to the shortest vector
        lam = np.zeros(k)
        lam[int(np.argmin(np.diag(m)))] = 1.0
        total = 1.0
    return torch.as_tensor(lam / total, dtype=torch.float64)


def _affine_min_norm(m: np.ndarray, support: list[int]) -> np.ndarray:
    """argmin mu^T M_S mu s.t. sum mu = 1 (least squares on the bordered KKT system, so a
    singular M_S, e.g. repeated vectors, still gets an answer)."""
    n = len(support)
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, :n] = m[np.ix_(support, support)]
    kkt[:n, n] = kkt[n, :n] = 1.0
    rhs = np.zeros(n + 1)
    rhs[n] = 1.0
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0][:n]
