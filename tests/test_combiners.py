"""Gradient combiners against answers computed by hand or in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies.combiners import (
    MGDA,
    PCGrad,
    ParetoMTL,
    build_combiner,
    min_norm_weights,
    preference_vectors,
)
from tasks.supervised import pareto_toy, read_dataset, write_dataset

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def test_pcgrad_conflicting_pair_projects_both_gradients() -> None:
    # g1.g2 = -1 < 0:  g1_pc = g1 - (-1/2) g2 = (0.5, 0.5);  g2_pc = g2 - (-1/1) g1 = (0, 1).
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    out = PCGrad(2, seed=0)(g)
    assert torch.allclose(out, torch.tensor([0.5, 1.5]))


def test_pcgrad_non_conflicting_is_the_plain_sum() -> None:
    g = torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    assert torch.allclose(PCGrad(3, seed=1)(g), g.sum(0))


def test_pcgrad_three_tasks_by_hand_is_order_independent_here() -> None:
    # g1 conflicts with g2 only; g3 is orthogonal to both, so the order cannot matter.
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    expected = torch.tensor([0.5, 0.5, 0.0]) + torch.tensor([0.0, 1.0, 0.0]) + g[2]
    for seed in range(4):
        assert torch.allclose(PCGrad(3, seed=seed)(g), expected)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (2, 5), elements=finite))
def test_pcgrad_two_tasks_removes_the_conflict(g: np.ndarray) -> None:
    grads = torch.tensor(g)
    combiner = PCGrad(2)
    out = combiner(grads)
    coef = combiner.last_weights
    assert torch.allclose(out, coef @ grads)
    # Each projected gradient no longer points against the other task.
    g1_pc = grads[0] + (coef[1] - 1.0) * grads[1] if grads[0] @ grads[1] < 0 else grads[0]
    assert float(g1_pc @ grads[1]) >= -1e-8 * (1 + float(grads.norm() ** 2))


def test_pcgrad_state_round_trip_reproduces_the_random_order() -> None:
    g = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    a = PCGrad(4, seed=5)
    state = a.state_dict()
    first = a(g)
    b = PCGrad(4, seed=99)
    b.load_state_dict(state)
    assert torch.allclose(b(g), first)


def _closed_form(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    diff = g1 - g2
    denom = float(diff @ diff)
    gamma = 0.5 if denom == 0 else min(max(float((g2 - g1) @ g2) / denom, 0.0), 1.0)
    return gamma * g1 + (1 - gamma) * g2


def test_mgda_two_tasks_hand_examples() -> None:
    assert torch.allclose(MGDA(2)(torch.tensor([[1.0, 0.0], [0.0, 1.0]])), torch.tensor([0.5, 0.5]))
    # One gradient inside the other's direction: the shorter one is the min-norm point.
    assert torch.allclose(MGDA(2)(torch.tensor([[1.0, 0.0], [2.0, 0.0]])), torch.tensor([1.0, 0.0]))
    # Opposite gradients: 0 is in the hull (Pareto stationary).
    assert torch.allclose(MGDA(2)(torch.tensor([[1.0, 1.0], [-2.0, -2.0]])), torch.zeros(2), atol=1e-7)


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, (2, 6), elements=finite))
def test_mgda_two_tasks_equals_closed_form(g: np.ndarray) -> None:
    grads = torch.tensor(g)
    assert torch.allclose(MGDA(2)(grads), _closed_form(grads[0], grads[1]), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 7), st.integers(0, 10_000))
def test_min_norm_point_satisfies_its_optimality_condition(k: int, seed: int) -> None:
    # a* is optimal iff (M a*)_i >= a*^T M a* for every i (no vertex improves it).
    v = np.random.default_rng(seed).standard_normal((k, 9))
    m = v @ v.T
    a = min_norm_weights(m).numpy()
    assert a.min() >= 0 and abs(a.sum() - 1) < 1e-9
    ma = m @ a
    assert ma.min() >= a @ ma - 1e-6 * np.trace(m)


def test_mgda_direction_descends_for_every_task() -> None:
    g = torch.randn(5, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = MGDA(5)(g)
    assert (g @ d >= float(d @ d) - 1e-6).all()


def test_mgda_loss_normalization_needs_losses() -> None:
    with pytest.raises(ValueError, match="needs the task losses"):
        MGDA(2, normalization="loss")(torch.eye(2))
    with pytest.raises(ValueError, match="valid choices"):
        MGDA(2, normalization="bogus")


def test_build_combiner_names_valid_choices() -> None:
    with pytest.raises(ValueError, match=r"valid choices: \['mgda', 'pareto_mtl', 'pcgrad', 'sum'\]"):
        build_combiner("gradnorm", 2)
    with pytest.raises(ValueError, match="valid parameters"):
        build_combiner("pcgrad", 2, temperature=1.0)
    with pytest.raises(ValueError, match="num_tasks=3"):
        build_combiner("sum", 3)(torch.zeros(2, 4))
    assert build_combiner("ParetoMTL", 2, preference_index=1).preference_index == 1


def test_pareto_mtl_finds_the_front_inside_each_preference_sector(tmp_path) -> None:
    path = write_dataset("pareto_toy", tmp_path, seed=0)
    centre = torch.tensor(read_dataset(path, name="pareto_toy").split("train").x, dtype=torch.float64)
    prefs = preference_vectors(2, 5)
    for k in range(5):
        torch.manual_seed(k)
        x = (torch.rand(20, dtype=torch.float64) - 0.5).requires_grad_()
        combiner = ParetoMTL(2, preference_index=k, num_preferences=5, max_init_steps=40)
        for _ in range(300):
            f = pareto_toy.objectives(x, centre)
            grads = torch.stack([torch.autograd.grad(f[t], x, retain_graph=True)[0] for t in range(2)])
            step = combiner(grads, f.detach())
            with torch.no_grad():
                x -= 0.5 * step
        f = pareto_toy.objectives(x, centre).detach().numpy()
        assert pareto_toy.distance_to_front(f) <= 1e-2, (k, f)
        # Inside sector k: the loss vector is closer in angle to u_k than to any other u_j.
        cosines = prefs @ (f / np.linalg.norm(f))
        assert int(np.argmax(cosines)) == k, (k, f, cosines)
        assert combiner.feasible_start_found


def test_pareto_mtl_first_steps_move_towards_its_sector() -> None:
    # Losses far outside sector 0 (which wants small f2... i.e. u_0 = (1, 0)):
    # the feasible-start phase must decrease the violated constraint G = (u_j - u_0).F.
    combiner = ParetoMTL(2, preference_index=0, num_preferences=5)
    grads = torch.eye(2, dtype=torch.float64)  # f_t's gradient is e_t
    d = combiner(grads, torch.tensor([0.1, 0.9], dtype=torch.float64))
    assert combiner.in_init_phase
    # Stepping along -d lowers f2 relative to f1.
    assert d[1] > 0 and d[0] < 0
    with pytest.raises(ValueError, match="needs the task losses"):
        combiner(grads)
