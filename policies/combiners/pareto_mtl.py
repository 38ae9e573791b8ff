"""Pareto MTL (Lin et al. 2019, "Pareto Multi-Task Learning"), Algorithm 1.

Preference vectors u_1..u_K split the objective space into sectors; run k
looks for a Pareto-optimal point in sector k, i.e. subject to

    G_j(theta) = (u_j - u_k)^T F(theta) <= 0   for all j != k.

    Phase 1, feasible start (at most ``max_init_steps`` steps, ends as soon as no
    constraint is violated):
        I = {j : G_j > 0};  d = -sum_{j in I} b_j grad G_j,
        b = argmin_{b in simplex} || sum_{j in I} b_j grad G_j ||^2
    Phase 2, constrained min-norm steps:
        I_eps = {j : G_j >= -eps}
        (l, b) = argmin_{simplex} || sum_t l_t g_t + sum_{j in I_eps} b_j grad G_j ||^2
        d = -(sum_t l_t g_t + sum_j b_j grad G_j)

With grad G_j = sum_t (u_j - u_k)_t g_t every direction is a weighted sum of
the task gradients: weights_t = l_t + sum_j b_j (u_j - u_k)_t.  As in the
authors' code, F is normalised to unit length when testing the constraints,
and the phase-2 weights are rescaled so that sum_t |weights_t| = T (the scale
of the plain sum), which makes the step size comparable with ``sum``.

Rows with a non-finite gradient or loss are left out of the step (weight 0;
the constraints are then taken on the remaining tasks).  Nothing depends on
the scale of the losses or gradients: F is normalised, the Gram matrix too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from policies.combiners.base import GradientCombiner, gram_info, weighted_sum
from policies.combiners.min_norm import min_norm_weights


def preference_vectors(num_tasks: int, num_preferences: int, seed: int = 0) -> np.ndarray:
    """K unit preference vectors: evenly spread angles in [0, pi/2] for 2 tasks
    (the paper's ``circle_points``), seeded random directions in the positive
    orthant for more tasks."""
    if num_preferences < 1:
        raise ValueError(f"num_preferences must be >= 1, got {num_preferences}")
    if num_tasks == 2:
        angles = np.linspace(0.0, math.pi / 2, num_preferences) if num_preferences > 1 else np.array([math.pi / 4])
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    v = np.abs(np.random.default_rng(seed).standard_normal((num_preferences, num_tasks)))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class ParetoMTL(GradientCombiner):
    """One Pareto MTL run: follows preference vector ``preference_index`` of ``preferences``."""

    name = "pareto_mtl"

    def __init__(
        self,
        num_tasks: int,
        preference_index: int = 0,
        num_preferences: int = 5,
        preferences: list[list[float]] | np.ndarray | None = None,
        max_init_steps: int = 100,
        epsilon: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(num_tasks)
        prefs = (
            np.asarray(preferences, dtype=np.float64)
            if preferences is not None
            else preference_vectors(num_tasks, num_preferences, seed)
        )
        if prefs.ndim != 2 or prefs.shape[1] != num_tasks or (prefs < 0).any():
            raise ValueError(
                f"preferences must be a [K x num_tasks={num_tasks}] non-negative matrix, got shape {prefs.shape}"
            )
        if not 0 <= preference_index < prefs.shape[0]:
            raise ValueError(f"preference_index must be in [0, {prefs.shape[0]}), got {preference_index}")
        self.preferences = prefs / np.linalg.norm(prefs, axis=1, keepdims=True)
        self.preference_index = int(preference_index)
        self.max_init_steps = int(max_init_steps)
        self.epsilon = float(epsilon)
        self.steps = 0
        self.feasible_start_found = False

    @property
    def in_init_phase(self) -> bool:
        """True while still looking for a point inside the preference sector."""
        return not self.feasible_start_found and self.steps < self.max_init_steps

    def constraint_values(self, losses: np.ndarray, task_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(w, G): w_j = u_j - u_k (rows j != k) and G_j = w_j . F / ||F||, on the present tasks."""
        prefs = self.preferences[:, task_ids]
        norms = np.linalg.norm(prefs, axis=1, keepdims=True)
        prefs = prefs / np.where(norms > 0, norms, 1.0)  # a preference with no weight on these tasks stays 0
        others = np.delete(np.arange(prefs.shape[0]), self.preference_index)
        w = prefs[others] - prefs[self.preference_index]
        top = float(np.max(np.abs(losses))) if losses.size else 0.0
        if not top > 0:
            return w, np.zeros(w.shape[0])  # F = 0: on every ray, no constraint is violated
        f = losses / top  # divided by its largest entry first: the norm cannot over- or underflow
        return w, w @ (f / np.linalg.norm(f))

    def combine(self, grads: Tensor, losses: Tensor | None, task_ids: Tensor) -> Tensor:
        if losses is None:
            raise ValueError("pareto_mtl needs the task losses (its constraints are on the loss vector)")
        info = gram_info(grads, losses)
        ids = info.usable_ids
        self.last_usable = torch.as_tensor(info.usable)
        all_weights = np.zeros(grads.shape[0])
        if ids.size == 0:
            self.steps += 1
            combined, self.last_weights = weighted_sum(all_weights, grads, info.usable)
            return combined
        w, g_values = self.constraint_values(info.losses[ids], task_ids.numpy()[ids])
        gram = info.gram[np.ix_(ids, ids)]  # normalised; every weight below is scale-free
        t = ids.size
        weights: np.ndarray | None = None
        if self.in_init_phase:
            active = g_values > 0
            if not active.any():
                self.feasible_start_found = True
            else:
                # Phase 1: min-norm over the violated constraints' gradients only.
                wa = w[active]
                b = min_norm_weights(wa @ gram @ wa.T).numpy()
                weights = b @ wa
        if weights is None:
            # Phase 2: task gradients plus the (nearly) active constraints' gradients.
            wa = w[g_values >= -self.epsilon] if self.epsilon > 0 else w[g_values > 0]
            basis = np.concatenate([np.eye(t), wa], axis=0)  # each vector in terms of g_1..g_T
            lam = min_norm_weights(basis @ gram @ basis.T).numpy()
            weights = lam @ basis
            # lam is on the simplex and the basis rows have norm <= 2, so the weights are
            # of order 1: a total below 1e-12 is round-off of an exact 0 (Pareto stationary).
            total = np.abs(weights).sum()
            weights = weights * (t / total) if total > 1e-12 else np.zeros(t)
        self.steps += 1
        all_weights[ids] = weights
        combined, self.last_weights = weighted_sum(all_weights, grads, info.usable, info.row_norms)
        return combined

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "feasible_start_found": self.feasible_start_found}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.feasible_start_found = bool(state["feasible_start_found"])
