"""Known answers for the combiners where the mutation run (benchmarks/mutation.py) found the tests
silent: MGDA's four normalisations, rows left out for non-finite values, the factory's aliases and
error text, the single-preference case of Pareto MTL, and the dtypes of the logged weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from policies.combiners import (MGDA, PCGrad, ParetoMTL, SumCombiner, build_combiner, min_norm_two, min_norm_weights,
                                preference_vectors)
from test_pcgrad_algorithm1 import algorithm1


def _min_norm_on_simplex(v: np.ndarray) -> np.ndarray:
    """argmin_{a in simplex} ||a^T v||^2, by a generic constrained solver (not the product's)."""
    t = v.shape[0]
    gram = v @ v.T
    res = minimize(lambda a: a @ gram @ a, np.full(t, 1.0 / t), jac=lambda a: 2 * gram @ a, method="SLSQP",
                   bounds=[(0.0, 1.0)] * t, constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1.0}],
                   options={"ftol": 1e-15, "maxiter": 500})
    return res.x


def _mgda_reference(g: np.ndarray, losses: np.ndarray, normalization: str) -> np.ndarray:
    """MGDA-UB's gradient normalisations (Sener & Koltun 2018, their code's `gradient_normalizers`):
    each g_t is divided by n_t = 1, ||g_t||, L_t or L_t ||g_t||, the min-norm point of the hull of
    the divided gradients is the step."""
    norms = np.linalg.norm(g, axis=1)
    n = {"none": np.ones(len(g)), "l2": norms, "loss": losses, "loss+": losses * norms}[normalization]
    v = g / n[:, None]
    return _min_norm_on_simplex(v) @ v


@pytest.mark.parametrize("normalization", ["none", "l2", "loss", "loss+"])
def test_mgda_two_tasks_by_hand(normalization: str) -> None:
    # g1 = [2, 0], g2 = [0, 1], losses [1, 4].  Min-norm of a v1 + (1-a) v2 with v1 _|_ v2:
    # a = |v2|^2 / (|v1|^2 + |v2|^2).
    #   none:  v = [2,0], [0,1]:       a = 1/5,   d = [0.4, 0.8]
    #   l2:    v = [1,0], [0,1]:       a = 1/2,   d = [0.5, 0.5]
    #   loss:  v = [2,0], [0,1/4]:     a = 1/65,  d = [2/65, 16/65]
    #   loss+: v = [1,0], [0,1/4]:     a = 1/17,  d = [1/17, 4/17]
    expected = {"none": [0.4, 0.8], "l2": [0.5, 0.5], "loss": [2 / 65, 16 / 65], "loss+": [1 / 17, 4 / 17]}
    g = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = MGDA(2, normalization=normalization)(g, torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(out, torch.tensor(expected[normalization], dtype=torch.float64), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("normalization", ["none", "l2", "loss", "loss+"])
@pytest.mark.parametrize("tasks", [3, 5])
def test_mgda_normalisations_match_a_generic_solver(normalization: str, tasks: int) -> None:
    rng = np.random.default_rng(tasks)
    g = rng.normal(size=(tasks, 4)) * rng.uniform(0.1, 5.0, size=(tasks, 1))
    losses = rng.uniform(0.2, 3.0, size=tasks)
    out = MGDA(tasks, normalization=normalization)(torch.from_numpy(g), torch.from_numpy(losses)).numpy()
    np.testing.assert_allclose(out, _mgda_reference(g, losses, normalization), rtol=1e-5, atol=1e-7)


def test_mgda_loss_normalisation_needs_losses() -> None:
    with pytest.raises(ValueError, match="normalization='loss\\+' needs the task losses"):
        MGDA(2, normalization="loss+")(torch.eye(2))


def test_pcgrad_leaves_a_non_finite_row_out_and_runs_algorithm1_on_the_rest() -> None:
    # Row 2 is NaN: the loop runs on the 4 finite rows (T = 4 in the random order), row 2 gets 0.
    rng = np.random.default_rng(3)
    g = rng.normal(size=(5, 3))
    g[1] = -0.8 * g[0] + 0.3 * g[3]  # a conflict with row 0 that the projection order matters for
    bad = g.copy()
    bad[2] = np.nan
    combiner = PCGrad(5, seed=11)
    out = combiner(torch.from_numpy(bad)).numpy()
    finite = np.delete(g, 2, axis=0)
    np.testing.assert_allclose(out, algorithm1(finite, torch.Generator().manual_seed(11)), rtol=1e-10, atol=1e-12)
    assert combiner.last_dropped == [2] and combiner.last_weights[2] == 0


def test_sum_logs_bool_usable_and_float64_weights_on_both_paths() -> None:
    c = SumCombiner(3)
    g = torch.ones(3, 2)
    torch.testing.assert_close(c(g), torch.full((2,), 3.0))
    assert c.last_usable.dtype == torch.bool and c.last_weights.dtype == torch.float64
    g[1, 0] = float("inf")
    torch.testing.assert_close(c(g), torch.full((2,), 2.0))
    assert c.last_usable.tolist() == [True, False, True] and c.last_weights.dtype == torch.float64
    assert c.last_weights.tolist() == [1.0, 0.0, 1.0]
    # A non-finite loss drops its row too, with finite gradients.
    torch.testing.assert_close(c(torch.ones(3, 2), torch.tensor([1.0, float("nan"), 2.0])), torch.full((2,), 2.0))
    assert c.last_dropped == [1]


@pytest.mark.parametrize("alias,cls", [("pareto-mtl", ParetoMTL), ("ParetoMTL", ParetoMTL), ("equal", SumCombiner),
                                       ("PCGrad", PCGrad)])
def test_build_combiner_aliases(alias: str, cls: type) -> None:
    assert type(build_combiner(alias, 2)) is cls


def test_build_combiner_lists_only_the_real_parameters() -> None:
    with pytest.raises(ValueError) as err:
        build_combiner("pcgrad", 2, temperature=1.0)
    assert str(err.value).endswith("valid parameters: ['seed']")


def test_one_preference_for_two_tasks_is_the_diagonal() -> None:
    np.testing.assert_allclose(preference_vectors(2, 1), [[math.sqrt(0.5), math.sqrt(0.5)]])
    np.testing.assert_allclose(preference_vectors(2, 3), [[1, 0], [math.sqrt(0.5), math.sqrt(0.5)], [0, 1]], atol=1e-15)
    with pytest.raises(ValueError, match="num_preferences must be >= 1, got 0"):
        preference_vectors(2, 0)


def test_pcgrad_default_seed_is_zero() -> None:
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [-0.2, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(PCGrad(3)(g), PCGrad(3, seed=0)(g))


@pytest.mark.parametrize("tasks,params", [(2, 4 * 20_000), (4, 20_000)])
def test_large_matrices_take_the_torch_path_with_the_same_answers(tasks: int, params: int) -> None:
    # T * P above 65,536 sends the Gram matrix through torch (`gram_info`'s large path).
    rng = np.random.default_rng(tasks)
    small = rng.normal(size=(tasks, 3))
    g = np.repeat(small, params // 3 + 1, axis=1)[:, :params] * 1e-3  # Gram = (P/3) x the small one's
    out = PCGrad(tasks, seed=2)(torch.from_numpy(g)).numpy()
    np.testing.assert_allclose(out, algorithm1(g, torch.Generator().manual_seed(2)), rtol=1e-9, atol=1e-15)
    losses = np.linspace(0.5, 2.0, tasks)
    for normalization in ("none", "loss+"):
        got = MGDA(tasks, normalization=normalization)(torch.from_numpy(g), torch.from_numpy(losses)).numpy()
        np.testing.assert_allclose(got, _mgda_reference(g, losses, normalization), rtol=1e-5, atol=1e-9)
    # A non-finite row on the large path: left out, the rest unchanged.
    bad = g.copy()
    bad[0, 5] = np.inf
    c = PCGrad(tasks, seed=2)
    np.testing.assert_allclose(c(torch.from_numpy(bad)).numpy(),
                               algorithm1(g[1:], torch.Generator().manual_seed(2)), rtol=1e-9, atol=1e-15)
    assert c.last_dropped == [0]


def test_min_norm_weights_computes_in_float64_whatever_the_input() -> None:
    v = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    gram32 = torch.from_numpy(v @ v.T)
    torch.testing.assert_close(min_norm_weights(gram32), min_norm_weights(gram32.double()), rtol=0, atol=0)


# -- Pareto MTL ------------------------------------------------------------------------------------

def test_pareto_defaults_and_explicit_preferences() -> None:
    c = ParetoMTL(3)
    np.testing.assert_allclose(c.preferences, preference_vectors(3, 5, 0), rtol=1e-15)  # renormalised: round-off
    assert c.preference_index == 0 and c.state_dict() == {"steps": 0, "feasible_start_found": False}
    np.testing.assert_allclose(ParetoMTL(3, seed=4).preferences, preference_vectors(3, 5, 4), rtol=1e-15)
    # Given preferences are used, each scaled to unit length.
    np.testing.assert_allclose(ParetoMTL(2, preferences=[[3, 4], [1, 0]]).preferences, [[0.6, 0.8], [1.0, 0.0]])
    # Phase 1 lasts at most max_init_steps (default 100) steps.
    c.load_state_dict({"steps": 99, "feasible_start_found": False})
    assert c.in_init_phase
    c.load_state_dict({"steps": 100, "feasible_start_found": False})
    assert not c.in_init_phase
    c.load_state_dict({"steps": 7, "feasible_start_found": True})
    assert c.state_dict() == {"steps": 7, "feasible_start_found": True} and not c.in_init_phase


def test_pareto_refuses_bad_preferences_naming_why() -> None:
    with pytest.raises(ValueError, match=r"\[K x num_tasks=2\] non-negative matrix, got shape \(2, 2\)"):
        ParetoMTL(2, preferences=[[1, -1], [0, 1]])
    with pytest.raises(ValueError, match=r"non-negative matrix, got shape \(2, 3\)"):
        ParetoMTL(2, preferences=[[1, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match=r"non-negative matrix, got shape \(2,\)"):
        ParetoMTL(2, preferences=[1, 0])
    with pytest.raises(ValueError, match=r"preference_index must be in \[0, 3\), got 3"):
        ParetoMTL(2, preferences=[[1, 0], [1, 1], [0, 1]], preference_index=3)


def test_pareto_constraint_values_by_hand() -> None:
    # u = [0.6, 0, 0.8], [0, 1, 0], [0, 0, 1]; task 2 absent: on tasks 0, 1 the preferences are
    # [0.6, 0] -> [1, 0] (rescaled), [0, 1], and [0, 0] (no weight there: stays 0).
    # k = 0: w = [u1 - u0, u2 - u0] = [[-1, 1], [-1, 0]]; F = [3, 4] -> F/|F| = [0.6, 0.8]:
    # G = [-0.6 + 0.8, -0.6] = [0.2, -0.6].
    c = ParetoMTL(3, preferences=[[3, 0, 4], [0, 1, 0], [0, 0, 1]])
    w, g = c.constraint_values(np.array([3.0, 4.0]), np.array([0, 1]))
    np.testing.assert_allclose(w, [[-1, 1], [-1, 0]])
    np.testing.assert_allclose(g, [0.2, -0.6])
    # All losses 0: F has no direction, no constraint is violated (one value per other preference).
    c4 = ParetoMTL(2, num_preferences=4)
    w, g = c4.constraint_values(np.zeros(2), np.array([0, 1]))
    assert w.shape == (3, 2) and g.tolist() == [0.0, 0.0, 0.0]


def test_preference_vectors_known_values() -> None:
    np.testing.assert_allclose(preference_vectors(2, 2), [[1, 0], [0, 1]], atol=1e-15)
    np.testing.assert_array_equal(preference_vectors(3, 4), preference_vectors(3, 4, seed=0))  # default seed 0
    v = np.abs(np.random.default_rng(5).standard_normal((4, 3)))
    np.testing.assert_allclose(preference_vectors(3, 4, seed=5), v / np.linalg.norm(v, axis=1, keepdims=True))


# -- the min-norm solver ---------------------------------------------------------------------------

def test_min_norm_small_cases_and_refusals() -> None:
    one = min_norm_weights(np.array([[4.0]]))
    assert one.dtype == torch.float64 and one.tolist() == [1.0]
    zeros = min_norm_weights(np.zeros((3, 3)))  # all vectors 0: every point of the hull is the min
    assert zeros.dtype == torch.float64 and zeros.tolist() == [1 / 3] * 3
    with pytest.raises(ValueError, match=r"^min_norm_weights needs a finite Gram matrix \(drop non-finite vectors "
                                         r"first\)$"):
        min_norm_weights(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    # Two vectors equal up to round-off, of different lengths: any gamma is the same point, 0.5.
    assert min_norm_two(1.0, 1.0 + 1e-9, 1.0 + 2e-9) == 0.5
    assert min_norm_two(1.0, 1.0, 1.0) == 0.5
    assert min_norm_two(4.0, 0.0, 1.0) == pytest.approx(0.2)  # [2, 0] and [0, 1]


@pytest.mark.parametrize("k", range(3, 9))
def test_min_norm_weights_match_a_generic_solver(k: int) -> None:
    rng = np.random.default_rng(40 + k)
    for dim in (2, k + 1):  # more vectors than dimensions (a face of the hull), and fewer
        v = rng.normal(size=(k, dim)) + (0.5 if dim == 2 else 0.0)
        lam = min_norm_weights(v @ v.T).numpy()
        assert lam.dtype == np.float64 and (lam >= 0).all() and lam.sum() == pytest.approx(1.0, abs=1e-12)
        reference = _min_norm_on_simplex(v)
        got, best = np.linalg.norm(lam @ v), np.linalg.norm(reference @ v)
        assert got <= best + 1e-9
        if dim > k - 1:  # vectors in general position: the minimiser is unique
            np.testing.assert_allclose(lam, reference, atol=1e-6)


def test_pcgrad_float32_near_the_top_of_the_range_sums_in_float64() -> None:
    # No pair conflicts (each dot >= 0.41e76), so PCGrad is the plain sum: [2e38, 3.15e38 x 4], finite in
    # float32. Summed in float32 the first column passes through 4e38 (inf) before the third row
    # brings it back: sum |w_t| ||g_t|| > float32 max sends the sum through float64.
    c = 1.05e38
    g = torch.tensor([[2e38, c, c, c, c], [2e38, c, c, c, c], [-2e38, c, c, c, c]], dtype=torch.float32)
    out = PCGrad(3)(g)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), g.double().sum(0).float().double())


@pytest.mark.parametrize("normalization", ["l2", "loss+"])
def test_mgda_with_an_all_zero_row_steps_nowhere(normalization: str) -> None:
    # A zero gradient puts the origin in the hull: the min-norm point, so the step, is 0 (the
    # row's norm is 0: its scale stays 1 instead of 1/0).
    g = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    c = MGDA(3, normalization=normalization)
    out = c(g, torch.tensor([1.0, 2.0, 4.0]))
    assert out.tolist() == [0.0, 0.0]
    assert np.isfinite(c.last_weights.numpy()).all()


def _mgda_loss_reference(g: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """'loss' with the product's floor: a loss below eps x the largest counts as that (all 0: no scaling)."""
    top = np.abs(losses).max()
    n = np.maximum(np.abs(losses), np.finfo(np.float64).eps * top) if top > 0 else np.ones(len(losses))
    v = g / n[:, None]
    return _min_norm_on_simplex(v) @ v


@pytest.mark.parametrize("losses", [[0.0, 0.0, 0.0], [0.3, 0.8, 0.5]])
def test_mgda_loss_normalisation_with_zero_losses(losses) -> None:
    # All losses 0: nothing to divide by, the 'none' step. Largest loss below 1: still divided.
    g = np.array([[1.0, 0.2], [0.4, 1.0], [0.9, -0.3]])  # 0 is outside their hull
    out = MGDA(3, normalization="loss")(torch.from_numpy(g), torch.tensor(losses, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(out, _mgda_loss_reference(g, np.array(losses)), rtol=1e-5, atol=1e-9)


def test_pareto_with_every_row_non_finite_steps_nowhere_and_counts_the_step() -> None:
    c = ParetoMTL(2)
    for step in (1, 2):
        out = c(torch.full((2, 3), float("nan")), torch.tensor([1.0, 1.0]))
        assert out.tolist() == [0.0, 0.0, 0.0] and c.last_weights.tolist() == [0.0, 0.0]
        assert c.state_dict()["steps"] == step
    with pytest.raises(ValueError, match=r"^pareto_mtl needs the task losses \(its constraints are on the loss vector\)$"):
        c(torch.eye(2))


def test_pareto_counts_steps_and_a_point_on_the_ray_is_a_feasible_start() -> None:
    # u = [1, 0], [0, 1], k = 0; losses [1, 1]: G = (u1 - u0) . F/|F| = 0 exactly, on the boundary,
    # not violated: the feasible start is found at once.
    c = ParetoMTL(2, preferences=[[1, 0], [0, 1]])
    g = torch.tensor([[1.0, 0.5], [0.2, 1.0]], dtype=torch.float64)
    c(g, torch.tensor([1.0, 1.0]))
    assert c.feasible_start_found and c.state_dict()["steps"] == 1
    c(g, torch.tensor([1.0, 1.0]))
    assert c.state_dict()["steps"] == 2


def _pareto_phase2_reference(g: np.ndarray, w: np.ndarray, g_values: np.ndarray, epsilon: float) -> np.ndarray:
    """Phase 2 as in the paper: min-norm over the task gradients and the gradients of the constraints
    with G_j >= -eps (G_j > 0 for eps = 0), weights rescaled to sum |w_t| = T."""
    active = w[g_values >= -epsilon] if epsilon > 0 else w[g_values > 0]
    basis = np.concatenate([np.eye(len(g)), active])
    lam = _min_norm_on_simplex(basis @ g)
    weights = lam @ basis
    return weights * (len(g) / np.abs(weights).sum()) @ g


@pytest.mark.parametrize("epsilon", [0.0, 0.5])
def test_pareto_phase2_includes_constraints_within_epsilon(epsilon: float) -> None:
    # 3 preferences, k = 1; losses such that one constraint is at G = -0.2ish (inside eps = 0.5, not 0).
    prefs = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    c = ParetoMTL(2, preferences=prefs, preference_index=1, epsilon=epsilon, max_init_steps=0)
    g = np.array([[1.0, 0.3], [-0.5, 1.0]])
    losses = np.array([0.5, 0.9])
    w, g_values = c.constraint_values(losses, np.array([0, 1]))
    assert ((g_values < 0) & (g_values >= -0.5)).any() and not (g_values > 0).all()
    out = c(torch.from_numpy(g), torch.from_numpy(losses)).numpy()
    np.testing.assert_allclose(out, _pareto_phase2_reference(g, w, g_values, epsilon), rtol=1e-5, atol=1e-8)


def test_pareto_stationary_point_steps_nowhere() -> None:
    # Opposite gradients: 0 is in their hull, the phase-2 weights sum to ~0: no step (not 0/0).
    c = ParetoMTL(2, preferences=[[1, 1], [1, 0]], max_init_steps=0)
    out = c(torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64), torch.tensor([1.0, 1.0]))
    assert out.tolist() == [0.0, 0.0]
