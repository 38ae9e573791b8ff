"""From per-task learning progress to a sampling distribution (pure functions)."""

from __future__ import annotations

import numpy as np

__all__ = ["learning_progress_probabilities", "entropy"]

_STD_RTOL = 8.0 * float(np.finfo(np.float64).eps)  # centring n equal values leaves ~eps * |value| per entry


def learning_progress_probabilities(
    learning_progress: np.ndarray,
    success_rate: np.ndarray,
    measured: np.ndarray,
    *,
    temperature: float = 1.0,
    uniform_mix: float = 0.0,
    untried_weight: float = 1.0,
    reserve_weight: np.ndarray | None = None,
) -> np.ndarray:
    """The paper's sampling rule, as its public ports implement it, plus one reserve.

    1. Among measured tasks (less the reserved ones, step 3), those with LP > 0 or
       success > 0 qualify; when none does, all of them qualify.
    2. Their LP is z-scored, divided by `temperature`, passed through a
       sigmoid and normalised; other measured tasks get 0.  A standard
       deviation within round-off of the LP values (<= 8 eps * max |LP|,
       e.g. 0) means the LPs are equal: every qualifying task gets the same
       weight, exactly.
    3. Reserved shares, taken before step 2's tasks share the rest: each task never
       measured keeps `untried_weight / num_tasks` (with the default 1.0, the share uniform
       sampling would give it) so it is tried soon; each measured task with a positive
       `reserve_weight` (the scheduler gives one to a task that never succeeded but is within
       reach) keeps `reserve_weight / num_tasks` and leaves step 2, so it is practised
       instead of sitting at the `uniform_mix` floor.  Reserves above 1 in total are scaled
       down to 1.  With no task measured the result is uniform.
    4. Finally ``(1 - uniform_mix) * p + uniform_mix / num_tasks``.

    Tasks with identical inputs get bit-identical probabilities.  The LP
    should already have round-off zeroed (`SuccessEstimates.learning_progress`
    does), so that a true LP of 0 arrives as exactly 0.
    """
    n = learning_progress.shape[0]
    uniform = 1.0 / n
    num_measured = int(np.count_nonzero(measured))
    if num_measured == 0:
        probabilities = np.full(n, uniform)
    else:
        lifted = np.zeros(n, dtype=bool) if reserve_weight is None else measured & (reserve_weight > 0)
        reserve = np.where(measured, 0.0, untried_weight * uniform)
        if reserve_weight is not None:
            reserve[lifted] = reserve_weight[lifted] * uniform
        reserved = float(reserve.sum())
        if reserved > 1.0:
            reserve /= reserved
            reserved = 1.0
        rated = measured & ~lifted
        probabilities = np.zeros(n)
        if rated.any():
            pool = rated & ((learning_progress > 0) | (success_rate > 0))
            if not pool.any():
                pool = rated
            lp = learning_progress[pool]
            # Population z-score written out: np.std/np.mean cost more than the maths at n ~ 1000.
            centred = lp - lp.sum() / lp.shape[0]
            std = np.sqrt(centred @ centred / lp.shape[0])
            if std <= _STD_RTOL * float(np.max(np.abs(lp))):
                centred[:] = 0.0  # equal up to the round-off of the centring: equal weights
                std = 1.0
            # weights = sigmoid(z / temperature), computed in place to save temporaries
            weights = np.multiply(centred, -1.0 / (std * temperature), out=centred)
            np.exp(weights, out=weights)
            weights += 1.0
            np.reciprocal(weights, out=weights)
            probabilities[pool] = weights * ((1.0 - reserved) / weights.sum())
            probabilities += reserve
        else:  # every measured task is reserved: the reserves are all there is
            probabilities = reserve / reserved
    if uniform_mix > 0.0:
        probabilities = (1.0 - uniform_mix) * probabilities + uniform_mix * uniform
    return probabilities


def entropy(probabilities: np.ndarray) -> float:
    """Shannon entropy in nats (0 log 0 = 0)."""
    p = probabilities[probabilities > 0]
    return float(-(p * np.log(p)).sum())
