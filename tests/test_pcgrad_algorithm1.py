"""PCGrad against a literal Algorithm 1 (Yu et al. 2020) for 3 to 12 tasks, same random order.

The product runs the algorithm on coefficients over the Gram matrix (see
policies/combiners/pcgrad.py); here it runs as printed in the paper, on the
gradient vectors themselves.  The two must agree on conflicting, non-orthogonal
gradients, where the order of projections and the use of the *running*
projection g_i^PC (not the original g_i) change the answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.combiners import PCGrad


def algorithm1(g: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """Algorithm 1, line by line; for each i the order of the others is one torch.randperm
    (the product draws one permutation of all T rows per i and skips j == i, so the same
    generator gives the same order)."""
    total = np.zeros(g.shape[1])
    for i in range(g.shape[0]):
        g_pc = g[i].copy()
        for j in torch.randperm(g.shape[0], generator=generator).tolist():
            if j == i:
                continue
            dot = g_pc @ g[j]
            if dot < 0:
                g_pc = g_pc - dot / (g[j] @ g[j]) * g[j]
        total += g_pc
    return total


def test_three_conflicting_tasks_by_hand() -> None:
    # g0 = [1, 0], g1 = [-1, 1], g2 = [-0.2, -1]; |g0|^2 = 1, |g1|^2 = 2, |g2|^2 = 1.04.
    # Seed 0 draws the orders 2,0,1 (for i=0), 2,1,0 (i=1), 1,2,0 (i=2); j == i is skipped.
    # i=0: g0.g2 = -0.2 < 0: g0 + (0.2/1.04) g2 = [25/26, -5/26];
    #      then .g1 = -30/26 < 0: + (15/26) g1 = [5/13, 5/13].
    # i=1: g1.g2 = -0.8 < 0: g1 + (0.8/1.04) g2 = [-15/13, 3/13];
    #      then .g0 = -15/13 < 0: + (15/13) g0 = [0, 3/13].
    # i=2: g2.g1 = -0.8 < 0: g2 + 0.4 g1 = [-0.6, -0.6]; then .g0 = -0.6 < 0: + 0.6 g0 = [0, -0.6].
    # Sum: [5/13, 5/13 + 3/13 - 3/5] = [5/13, 1/65] = [0.3846, 0.0154].
    # Projecting the original g_i at each step (not the running g_i^PC) gives [-0.092, -0.062],
    # which points against task 0 (its dot with g0 is negative).
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [-0.2, -1.0]], dtype=torch.float64)
    expected = torch.tensor([5 / 13, 1 / 65], dtype=torch.float64)
    out = PCGrad(3, seed=0)(g)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.numpy(), algorithm1(g.numpy(), torch.Generator().manual_seed(0)))


def _conflicting(rng: np.random.Generator, tasks: int, dim: int) -> np.ndarray:
    """Gradients around a shared direction with large task-specific parts, norms that differ,
    no orthogonal pair, and at least one task in conflict with two others (so the order of
    its projections and the use of the running projection both matter); drawn until so."""
    while True:
        shared = rng.normal(size=dim)
        g = 0.3 * shared + rng.normal(size=(tasks, dim)) * rng.uniform(0.2, 3.0, size=(tasks, 1))
        dots = g @ g.T
        off = ~np.eye(tasks, dtype=bool)
        if np.abs(dots[off]).min() > 1e-3 and ((dots < 0) & off).sum(axis=1).max() >= 2:
            return g


@pytest.mark.parametrize("tasks", range(3, 13))
def test_equals_a_literal_algorithm1_on_conflicting_gradients(tasks: int) -> None:
    rng = np.random.default_rng(100 + tasks)
    dim = 2 + tasks // 2  # fewer dimensions than tasks from 5 tasks on: projections interact
    combiner = PCGrad(tasks, seed=tasks)
    reference_rng = torch.Generator().manual_seed(tasks)
    for _ in range(4):  # successive calls keep drawing from the same generator
        g = _conflicting(rng, tasks, dim)
        expected = algorithm1(g, reference_rng)
        out = combiner(torch.from_numpy(g)).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9 * np.abs(g).max())


def test_float32_gradients_follow_the_float64_algorithm() -> None:
    # The learners hand float32 gradients; the product solves in float64 and casts back.
    rng = np.random.default_rng(7)
    g = _conflicting(rng, 10, 6)
    out = PCGrad(10, seed=3)(torch.from_numpy(g).float())
    assert out.dtype == torch.float32
    expected = algorithm1(g.astype(np.float32).astype(np.float64), torch.Generator().manual_seed(3))
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(g).max())


def test_a_task_whose_running_projection_turns_against_itself_is_not_projected_on_itself() -> None:
    # Algorithm 1 projects g_i^PC only on the *other* tasks' gradients. Here (seed 3) a running
    # projection ends with a negative dot with its own g_i when j = i comes up in the order;
    # projecting on g_i too would give [0.159, 0.052] instead of [0.347, 0.028].
    g = np.array([[2.0, 0.6], [0.7, -0.5], [-1.6, 0.2]])
    out = PCGrad(3, seed=3)(torch.from_numpy(g)).numpy()
    np.testing.assert_allclose(out, algorithm1(g, torch.Generator().manual_seed(3)), rtol=1e-12)
    np.testing.assert_allclose(out, [0.34722005, 0.02824086], rtol=1e-6)
