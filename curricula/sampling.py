"""From per-task learning progress to a sampling distribution (pure functions)."""

from __future__ import annotations

import numpy as np

__all__ = ["learning_progress_probabilities", "entropy"]


def learning_progress_probabilities(
    learning_progress: np.ndarray,
    success_rate: np.ndarray,
    measured: np.ndarray,
    *,
    temperature: float = 1.0,
    uniform_mix: float = 0.0,
    untried_weight: float = 1.0,
) -> np.ndarray:
    """The paper's sampling rule, as its public ports implement it.

    1. Among measured tasks, those with LP > 0 or success > 0 qualify; when none
       does, all measured tasks qualify.
    2. Their LP is z-scored (a standard deviation of 0 counts as 1), divided by
       `temperature`, passed through a sigmoid and normalised; other measured
       tasks get 0.
    3. Tasks never measured yet each keep `untried_weight / num_tasks` (with the
       default 1.0, the share uniform sampling would give them) so they are
       tried soon; the measured tasks share the rest. With no task measured the
       result is uniform.
    4. Finally ``(1 - uniform_mix) * p + uniform_mix / num_tasks``.
    """
    n = learning_progress.shape[0]
    uniform = 1.0 / n
    num_measured = int(np.count_nonzero(measured))
    if num_measured == 0:
        probabilities = np.full(n, uniform)
    else:
        pool = measured & ((learning_progress > 0) | (success_rate > 0))
        if not pool.any():
            pool = measured
        lp = learning_progress[pool]
        # Population z-score written out: np.std/np.mean cost more than the maths at n ~ 1000.
        centred = lp - lp.sum() / lp.shape[0]
        std = np.sqrt(centred @ centred / lp.shape[0])
        # weights = sigmoid(z / temperature), computed in place to save temporaries
        weights = np.multiply(centred, -1.0 / (std * temperature if std > 0 else temperature), out=centred)
        np.exp(weights, out=weights)
        weights += 1.0
        np.reciprocal(weights, out=weights)
        probabilities = np.zeros(n)
        untried_share = min(1.0, untried_weight * uniform * (n - num_measured))
        probabilities[pool] = weights * ((1.0 - untried_share) / weights.sum())
        if num_measured < n:
            probabilities[~measured] = untried_share / (n - num_measured)
    if uniform_mix > 0.0:
        probabilities = (1.0 - uniform_mix) * probabilities + uniform_mix * uniform
    return probabilities


def entropy(probabilities: np.ndarray) -> float:
    """Shannon entropy in nats (0 log 0 = 0)."""
    p = probabilities[probabilities > 0]
    return float(-(p * np.log(p)).sum())
