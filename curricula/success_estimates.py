"""Per-task success estimates: fast and slow EMAs, reweighting and learning progress.

The maths follows the Minecraft curriculum paper (Kanitscheider et al. 2021,
arXiv:2106.14876) as its public ports implement it:

* a measurement ``x`` of a task's success is optionally normalised against a
  random agent's rate ``b``: ``p = max(x - b, 0) / (1 - b)``;
* ``p_fast`` is an EMA of ``p`` (``alpha_fast``), ``p_slow`` an EMA *of p_fast*
  (``alpha_slow``), both initialised at the task's first measurement;
* ``f(p) = (1 - theta) p / (p + theta (1 - 2p))`` boosts changes at low p;
* ``LP = |f(p_fast) - f(p_slow)|`` (or the signed difference); a difference
  below ``lp_tolerance * max(f(p_fast), f(p_slow))`` is round-off (a task
  measured at a constant rate has p_fast = p_slow exactly, in exact
  arithmetic) and counts as exactly 0.

`SuccessEstimates.absorb` applies a whole batch of measurements in order with
one pass of numpy (no Python loop over episodes): for a task with ``k`` new
measurements ``x_1..x_k`` the EMAs have the closed form

    F_k = u^k F_0 + a * sum_i u^(k-i) x_i
    S_k = v^k S_0 + b F_0 u c(k-1) + a b * sum_i c(k-i) x_i

with ``u = 1 - alpha_fast``, ``v = 1 - alpha_slow`` and
``c(m) = sum_{l=0..m} v^(m-l) u^l``; every power has a non-negative exponent,
so nothing overflows. It is tested against the plain sequential loop.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "reweight",
    "normalise_against_random",
    "sequential_ema",
    "SuccessEstimates",
    "check_alpha",
    "lp_tolerance",
]

_NO_BASELINE = -1.0  # marks "random baseline not measured yet" in the per-task array
_EPS = float(np.finfo(np.float64).eps)


def lp_tolerance(alpha_fast: float, alpha_slow: float) -> float:
    """Relative size below which ``f(p_fast) - f(p_slow)`` is round-off, not progress.

    Each EMA update rounds at the level of eps * p, and an EMA remembers about
    1 / alpha updates, so p_fast and p_slow carry round-off of order
    eps * p * (1 / alpha_fast + 1 / alpha_slow); f has a relative condition
    number <= 1 on [0, 1].  64 times that is far above the round-off measured
    on constant-rate histories (tests/test_numerics.py) and far below any real
    progress (a single differing measurement moves p_fast by alpha_fast * |x - p|).
    """
    return 64.0 * _EPS * (1.0 / alpha_fast + 1.0 / alpha_slow)


def check_alpha(name: str, value: float) -> float:
    """Return `value` as float or raise ValueError unless it lies in (0, 1]."""
    value = float(value)
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


def reweight(p: np.ndarray | float, theta: float = 0.1) -> np.ndarray | float:
    """The paper's low-probability reweighting ``f(p) = (1-theta) p / (p + theta (1-2p))``.

    f(0) = 0, f(1) = 1, and for theta < 0.5 small probabilities are stretched so a
    change from 0.01 to 0.05 counts as much as a large change at mid range.
    """
    p = np.asarray(p, dtype=np.float64)
    # Same expression with the denominator regrouped: one fewer temporary array.
    return (1.0 - theta) * p / ((1.0 - 2.0 * theta) * p + theta)


def normalise_against_random(x: np.ndarray | float, baseline: np.ndarray | float) -> np.ndarray | float:
    """``max(x - b, 0) / (1 - b)``: success above what a random agent achieves."""
    x = np.asarray(x, dtype=np.float64)
    return np.maximum(x - baseline, 0.0) / (1.0 - np.asarray(baseline, dtype=np.float64))


def sequential_ema(values: Sequence[float], alpha_fast: float = 0.1, alpha_slow: float = 0.1) -> tuple[float, float]:
    """Reference loop for one task: (p_fast, p_slow) after `values`, both starting at values[0]."""
    fast = slow = float(values[0])
    for x in values[1:]:
        fast = alpha_fast * float(x) + (1.0 - alpha_fast) * fast
        slow = alpha_slow * fast + (1.0 - alpha_slow) * slow
    return fast, slow


class SuccessEstimates:
    """Fast/slow EMAs of every task's (normalised) success, plus a raw success EMA.

    Args:
        num_tasks: number of tasks.
        alpha_fast: EMA weight of the fast estimate, in (0, 1].
        alpha_slow: EMA weight of the slow estimate (an EMA of the fast one), in (0, 1].
        random_baseline: None (no normalisation), a float or per-task array of a
            random agent's success rate in [0, 1), or "first_measurement" (each
            task's first measurement is taken as its random rate, capped at
            `max_random_baseline`, as the public ports do).
        max_random_baseline: cap for measured baselines, so 1 - b never vanishes.
    """

    def __init__(
        self,
        num_tasks: int,
        alpha_fast: float = 0.1,
        alpha_slow: float = 0.1,
        random_baseline: float | Sequence[float] | str | None = None,
        max_random_baseline: float = 0.75,
    ) -> None:
        self.num_tasks = int(num_tasks)
        self.alpha_fast = check_alpha("alpha_fast", alpha_fast)
        self.alpha_slow = check_alpha("alpha_slow", alpha_slow)
        if not (0.0 <= max_random_baseline < 1.0):
            raise ValueError(f"max_random_baseline must be in [0, 1), got {max_random_baseline}")
        self.max_random_baseline = float(max_random_baseline)
        self.measure_baseline = False
        baseline = np.zeros(self.num_tasks)
        if isinstance(random_baseline, str):
            if random_baseline != "first_measurement":
                raise ValueError(
                    f"random_baseline must be None, a number in [0, 1), a per-task list, or "
                    f"'first_measurement'; got {random_baseline!r}"
                )
            self.measure_baseline = True
            baseline[:] = _NO_BASELINE
        elif random_baseline is not None:
            baseline[:] = np.broadcast_to(np.asarray(random_baseline, dtype=np.float64), (self.num_tasks,))
            if not np.all((baseline >= 0.0) & (baseline < 1.0)):
                raise ValueError(f"random_baseline values must be in [0, 1), got {random_baseline}")
        self.random_baseline_setting = random_baseline if not isinstance(random_baseline, np.ndarray) else random_baseline.tolist()
        self.baseline = baseline
        self.p_fast = np.zeros(self.num_tasks)
        self.p_slow = np.zeros(self.num_tasks)
        self.success_rate = np.zeros(self.num_tasks)  # EMA (alpha_fast) of raw measurements
        self.measurements = np.zeros(self.num_tasks, dtype=np.int64)
        self._tables_len = 0
        self._grow_tables(1024)

    # -- closed-form weight tables -------------------------------------------------
    def _grow_tables(self, length: int) -> None:
        """Cache u^m, v^m and c(m) for m < length (they only depend on the alphas)."""
        if length <= self._tables_len:
            return
        length = max(length, 2 * self._tables_len)
        m = np.arange(length, dtype=np.float64)
        u, v = 1.0 - self.alpha_fast, 1.0 - self.alpha_slow
        with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
            self._u_pow = u**m
            self._v_pow = v**m
            big, small = max(u, v), min(u, v)
            if big == small:
                c = (m + 1.0) * big**m
            else:
                # c(m) = big^m (1 - r^(m+1)) / (1 - r), r = small / big, written with
                # expm1 so alphas that differ only slightly keep full precision.
                log_r = (np.log(small) if small > 0 else -np.inf) - np.log(big)
                c = big**m * np.expm1((m + 1.0) * log_r) / np.expm1(log_r)
        self._c = c
        self._tables_len = length

    # -- updates ---------------------------------------------------------------------
    def absorb(self, task: np.ndarray, value: np.ndarray) -> None:
        """Apply measurements `value[i]` (success in [0, 1]) of `task[i]`, in order.

        The caller has validated `task` (ids in range) and `value` (finite, in [0, 1]).
        """
        n = task.shape[0]
        if n == 0:
            return
        task = task.astype(np.intp, copy=False)
        raw = value.astype(np.float64, copy=False)
        counts = np.bincount(task, minlength=self.num_tasks)
        # Position of each measurement counted from the end of its task's run in
        # this batch (0 = last). A stable sort on small ints is a radix sort.
        sort_key = task.astype(np.int16) if self.num_tasks < 32768 else task
        order = np.argsort(sort_key, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(n, dtype=np.intp)
        rank[order] = np.arange(n) - starts[task[order]]
        from_end = counts[task] - 1 - rank
        self._grow_tables(int(counts.max()))

        # Tasks seen for the first time start both EMAs at their first measurement.
        new = (self.measurements == 0) & (counts > 0)
        first_row = np.zeros(self.num_tasks, dtype=np.intp)
        first_row[task[order[starts[counts > 0]]]] = order[starts[counts > 0]]
        if self.measure_baseline:
            rows = first_row[new]
            self.baseline[new] = np.minimum(raw[rows], self.max_random_baseline)
        baseline = np.maximum(self.baseline, 0.0)  # unmeasured (-1) never used below
        x = np.maximum(raw - baseline[task], 0.0) / (1.0 - baseline[task])

        f0 = self.p_fast.copy()
        s0 = self.p_slow.copy()
        r0 = self.success_rate.copy()
        k = counts.copy()
        weight_mask = np.ones(n, dtype=bool)
        if new.any():
            rows = first_row[new]
            f0[new] = s0[new] = x[rows]
            r0[new] = raw[rows]
            k[new] -= 1
            weight_mask[rows] = False  # the first measurement is the initial value itself

        a, b = self.alpha_fast, self.alpha_slow
        u_pow, v_pow, c = self._u_pow, self._v_pow, self._c
        w_fast = np.where(weight_mask, a * u_pow[from_end], 0.0)
        w_slow = np.where(weight_mask, a * b * c[from_end], 0.0)
        sum_fast = np.bincount(task, weights=w_fast * x, minlength=self.num_tasks)
        sum_raw = np.bincount(task, weights=w_fast * raw, minlength=self.num_tasks)
        sum_slow = np.bincount(task, weights=w_slow * x, minlength=self.num_tasks)
        c_prev = np.where(k > 0, c[np.maximum(k - 1, 0)], 0.0)
        u = 1.0 - a
        self.p_fast = u_pow[k] * f0 + sum_fast
        self.p_slow = v_pow[k] * s0 + b * f0 * u * c_prev + sum_slow
        self.success_rate = u_pow[k] * r0 + sum_raw
        # Convex combinations of values in [0, 1], but round-off can leave 1 + 1e-16.
        np.minimum(self.p_fast, 1.0, out=self.p_fast)
        np.minimum(self.p_slow, 1.0, out=self.p_slow)
        np.minimum(self.success_rate, 1.0, out=self.success_rate)
        self.measurements += counts

    # -- derived quantities ------------------------------------------------------------
    def learning_progress(self, theta: float = 0.1, signed: bool = False) -> np.ndarray:
        """``f(p_fast) - f(p_slow)`` (absolute unless `signed`); 0 for unmeasured tasks.

        A difference within `lp_tolerance` of the larger of the two f values is
        round-off and returned as exactly 0, so tasks whose true LP is 0 get
        exactly 0 (and the sampler's z-score does not blow round-off up).
        """
        fast = reweight(self.p_fast, theta)
        slow = reweight(self.p_slow, theta)
        lp = fast - slow
        noise = np.maximum(fast, slow)
        noise *= lp_tolerance(self.alpha_fast, self.alpha_slow)
        lp[np.abs(lp) <= noise] = 0.0
        return lp if signed else np.abs(lp, out=lp)

    def state_dict(self) -> dict:
        return {
            "p_fast": self.p_fast.copy(),
            "p_slow": self.p_slow.copy(),
            "success_rate": self.success_rate.copy(),
            "measurements": self.measurements.copy(),
            "baseline": self.baseline.copy(),
        }

    def load_state_dict(self, state: dict) -> None:
        arrays = {}
        for key, dtype in [
            ("p_fast", np.float64),
            ("p_slow", np.float64),
            ("success_rate", np.float64),
            ("measurements", np.int64),
            ("baseline", np.float64),
        ]:
            value = np.array(state[key], dtype=dtype)
            if value.shape != (self.num_tasks,):
                raise ValueError(
                    f"state '{key}' has shape {value.shape}; expected ({self.num_tasks},)"
                )
            arrays[key] = value
        for key, value in arrays.items():
            setattr(self, key, value)
