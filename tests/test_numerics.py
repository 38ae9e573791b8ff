"""Numerical robustness of the gradient combiners and the learning-progress sampler (issue 17).

Known answers for the four failing inputs of the issue, then property tests:
any real-valued gradient matrix (1-12 tasks, 1-10k params, scales 1e-30..1e30,
rows identical / opposite / zero / non-finite) gives a finite combined
gradient; MGDA's is the min-norm point of the hull (against an exact
enumeration written here); PCGrad's never points against a task for 2 tasks;
tasks with identical histories get identical probabilities, exactly.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curricula import (
    EpisodeOutcomes,
    LearningProgressCurriculum,
    SuccessEstimates,
    build_curriculum,
    learning_progress_probabilities,
    learning_progress_setting_error,
)
from policies import apply_multitask_backward, build_combiner, build_network
from policies.combiners import COMBINERS, min_norm_two, min_norm_weights

INF, NAN = float("inf"), float("nan")


def combiner(name: str, num_tasks: int):
    return build_combiner(name, num_tasks)


def eval_round(rates_hits: list[tuple[int, int]], episodes: int = 5) -> EpisodeOutcomes:
    """One evaluation round: `episodes` episodes of every task, `hits` of them successful."""
    task, success = [], []
    for t, hits in rates_hits:
        task += [t] * episodes
        success += [True] * hits + [False] * (episodes - hits)
    n = len(task)
    return EpisodeOutcomes(task=np.array(task, np.int64), success=np.array(success), episode_return=np.zeros(n),
                           length=np.ones(n, np.int64), evaluation=True)


def online(task: list[int], success: list[int]) -> EpisodeOutcomes:
    n = len(task)
    return EpisodeOutcomes(task=np.array(task, np.int64), success=np.array(success, bool),
                           episode_return=np.zeros(n), length=np.ones(n, np.int64))


# -- 1. a non-finite gradient row ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COMBINERS))
@pytest.mark.parametrize("bad", [INF, -INF, NAN])
def test_issue_input_1_a_non_finite_row_is_dropped_not_an_exception(name: str, bad: float) -> None:
    # Rows 0 and 2 are e1 and e2; row 1 is dropped.  By hand, on the two that remain:
    #   sum and PCGrad (no conflict): e1 + e2 = [1, 1], weights [1, 0, 1];
    #   MGDA: min-norm point of the segment e1-e2 is [0.5, 0.5], weights [0.5, 0, 0.5].
    grads = torch.tensor([[1.0, 0.0], [bad, 0.0], [0.0, 1.0]], dtype=torch.float64)
    c = combiner(name, 3)
    out = c(grads, torch.tensor([1.0, 1.0, 1.0]))
    assert torch.isfinite(out).all()
    assert c.last_usable.tolist() == [True, False, True]
    assert c.last_dropped == [1]
    assert c.last_weights[1] == 0.0
    expected = {"sum": ([1.0, 1.0], [1, 0, 1]), "pcgrad": ([1.0, 1.0], [1, 0, 1]), "mgda": ([0.5, 0.5], [0.5, 0, 0.5])}
    if name in expected:
        assert out.tolist() == pytest.approx(expected[name][0], abs=1e-15)
        assert c.last_weights.tolist() == pytest.approx(expected[name][1], abs=1e-15)
    else:  # pareto_mtl: its own answer on the two finite rows, row 1 weight 0
        ref = combiner(name, 3)
        two = ref(grads[[0, 2]], torch.tensor([1.0, 1.0]), torch.tensor([0, 2]))
        assert torch.allclose(out, two)


def test_issue_input_1_mgda_three_tasks_float32_and_all_rows_bad() -> None:
    out = combiner("mgda", 3)(torch.tensor([[1.0, 0.0], [INF, 0.0], [0.0, 1.0]]))
    assert out.tolist() == pytest.approx([0.5, 0.5])
    c = combiner("mgda", 2)
    out = c(torch.tensor([[NAN, 1.0], [INF, 0.0]]))
    assert out.tolist() == [0.0, 0.0] and c.last_weights.tolist() == [0.0, 0.0] and c.last_dropped == [0, 1]


def test_a_non_finite_loss_drops_the_row_for_every_combiner() -> None:
    grads = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    for name in sorted(COMBINERS):
        c = combiner(name, 3)
        out = c(grads, torch.tensor([1.0, NAN, 1.0]))
        assert torch.isfinite(out).all() and c.last_dropped == [1], name


class _Blowup(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss with an overflowing gradient."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g * INF


def _net_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    net = build_network("shared_bottom", 5, 3, 3, hidden=(4, 4))
    x, task = torch.randn(9, 5), torch.tensor([0, 1, 2] * 3)
    return net, x, task


@pytest.mark.parametrize("name", sorted(COMBINERS))
def test_apply_multitask_backward_drops_a_task_whose_gradient_overflows(name: str) -> None:
    net, x, task = _net_and_batch()

    def losses(blow_up: bool):
        out = net(x, task)
        return [(_Blowup.apply(out[task == t]) if (t == 1 and blow_up) else out[task == t]).pow(2).mean() for t in range(3)]

    stats = apply_multitask_backward(net, losses(True), build_combiner(name, 3))
    assert stats.dropped_nonfinite == [False, True, False]
    assert stats.dropped_nonfinite_tasks == [1]
    assert stats.present == [True, True, True]
    assert all(p.grad is None for p in net.task_parameters(1))
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert stats.task_weights[1] == 0.0
    assert np.isfinite(stats.combined_grad_norm)
    if name == "sum":
        # Exactly the backward of the two finite tasks' summed loss.
        net.zero_grad(set_to_none=True)
        l0, _, l2 = losses(False)
        (l0 + l2).backward()
        for n, p in net.named_parameters():
            if n in grads:
                assert torch.allclose(grads[n], p.grad, atol=1e-6), n


def test_apply_multitask_backward_drops_a_task_whose_own_parameters_overflow() -> None:
    net, x, task = _net_and_batch(1)
    head = net.task_parameters(2)[0]
    handle = head.register_hook(lambda g: g * INF)
    out = net(x, task)
    stats = apply_multitask_backward(net, [out[task == t].pow(2).mean() for t in range(3)], build_combiner("sum", 3))
    handle.remove()
    assert stats.dropped_nonfinite == [False, False, True]
    assert stats.task_weights == [1.0, 1.0, 0.0]
    assert all(p.grad is None for p in net.task_parameters(2))
    assert all(torch.isfinite(p.grad).all() for p in net.shared_parameters())


def test_apply_multitask_backward_reports_a_non_finite_loss_with_samples() -> None:
    net, x, task = _net_and_batch(2)
    out = net(x, task)
    losses = [out[task == t].pow(2).mean() for t in range(3)]
    losses[0] = losses[0] * INF
    stats = apply_multitask_backward(net, losses, build_combiner("mgda", 3), task_sample_counts=[3, 3, 0])
    # Task 0: samples but an inf loss (dropped); task 2: no samples (absent, not dropped).
    assert stats.present == [False, True, False]
    assert stats.dropped_nonfinite == [True, False, False]
    assert stats.dropped_nonfinite_tasks == [0]


def test_apply_multitask_backward_all_finite_reports_nothing_dropped() -> None:
    net, x, task = _net_and_batch(3)
    out = net(x, task)
    stats = apply_multitask_backward(net, [out[task == t].pow(2).mean() for t in range(3)], build_combiner("pcgrad", 3))
    assert stats.dropped_nonfinite == [False, False, False] and stats.dropped_nonfinite_tasks == []


# -- 2. tiny gradients: scale-relative tolerances --------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [1e-11, 1.0, 1e11, 1e-30, 1e30])
def test_issue_input_2_mgda_two_tiny_gradients(dtype: torch.dtype, scale: float) -> None:
    # g1 = s [1, 0], g2 = s [0, 3]: gamma = (g2.g2 - g1.g2) / |g1 - g2|^2 = 9 / (1 + 9) = 0.9,
    # so weights [0.9, 0.1] and d = s [0.9, 0.3] at every scale s.
    g = torch.tensor([[scale, 0.0], [0.0, 3 * scale]], dtype=dtype)
    c = combiner("mgda", 2)
    out = c(g)
    assert c.last_weights.tolist() == pytest.approx([0.9, 0.1], rel=1e-6)
    assert (out / scale).tolist() == pytest.approx([0.9, 0.3], rel=1e-6)


def test_min_norm_two_tolerance_is_relative() -> None:
    assert min_norm_two(1e-22, 0.0, 9e-22) == pytest.approx(0.9)
    assert min_norm_two(1e-300, 0.0, 9e-300) == pytest.approx(0.9)
    assert min_norm_two(1.0, 1.0, 1.0) == 0.5  # the same vector twice
    assert min_norm_two(0.0, 0.0, 0.0) == 0.5
    # Wolfe's algorithm at tiny scales agrees with it: e1, 3 e2, 5 e3 scaled by 1e-20.
    w = min_norm_weights(np.diag([1.0, 9.0, 25.0]) * 1e-40).numpy()
    inv = 1.0 / np.array([1.0, 9.0, 25.0])
    assert w == pytest.approx(inv / inv.sum())


# -- 3. constant success rates: LP exactly 0 ----------------------------------------------


def test_issue_input_3_equal_rounds_give_exactly_the_uniform_answer() -> None:
    # Two evaluation rounds, 5 episodes per task, success rates [1.0, 0.2] both times:
    # p_fast = p_slow exactly, so LP = [0, 0]; no task qualifies by LP, both by success,
    # z-scores are 0, sigmoid(0) = 0.5 each: probabilities [0.5, 0.5] exactly.
    cur = LearningProgressCurriculum(["a", "b"], success_source="evaluation", evaluation_interval_steps=1,
                                     alpha_fast=0.1, alpha_slow=0.1, uniform_mix=0.0, untried_weight=0.0)
    for _ in range(2):
        cur.update(eval_round([(0, 5), (1, 1)]))
    assert cur.learning_progress().tolist() == [0.0, 0.0]
    assert cur.distribution().probabilities.tolist() == [0.5, 0.5]
    metrics = cur.metrics()
    assert metrics["learning_progress/a"] == 0.0 and metrics["learning_progress/b"] == 0.0
    assert metrics["probability/a"] == 0.5


def test_issue_input_3_one_hundred_constant_rate_cases_are_exact() -> None:
    rng = np.random.default_rng(17)
    for case in range(100):
        n = int(rng.integers(2, 6))
        episodes = int(rng.integers(1, 12))
        hits = rng.integers(0, episodes + 1, size=n)
        alpha_fast, alpha_slow = (float(a) for a in rng.choice([0.01, 0.05, 0.1, 0.3, 1.0], size=2))
        cur = LearningProgressCurriculum([f"t{i}" for i in range(n)], success_source="evaluation",
                                         evaluation_interval_steps=1, alpha_fast=alpha_fast, alpha_slow=alpha_slow,
                                         uniform_mix=0.0, untried_weight=0.0)
        for _ in range(int(rng.integers(2, 60))):
            cur.update(eval_round([(t, int(h)) for t, h in enumerate(hits)], episodes))
        assert (cur.learning_progress() == 0).all(), case
        # Exact answer: uniform over the tasks with some success (all tasks if none has any).
        pool = hits > 0 if (hits > 0).any() else np.ones(n, bool)
        expected = np.where(pool, 1.0 / pool.sum(), 0.0)
        assert cur.distribution().probabilities == pytest.approx(expected, abs=1e-15), case


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(0, 20),
    episodes=st.integers(1, 20),
    rounds=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    alphas=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)),
    baseline=st.sampled_from([None, 0.0, 0.1, 0.37]),
)
def test_constant_measurements_have_exactly_zero_lp(rate, episodes, rounds, alphas, baseline) -> None:
    x = min(rate, episodes) / episodes
    est = SuccessEstimates(1, alphas[0], alphas[1], baseline)
    for k in rounds:  # batches of k equal measurements
        est.absorb(np.zeros(k, np.int64), np.full(k, x))
    assert est.learning_progress(signed=True).tolist() == [0.0]


def test_real_progress_is_not_mistaken_for_round_off() -> None:
    est = SuccessEstimates(1, 0.1, 0.1)
    est.absorb(np.zeros(1, np.int64), np.array([0.5]))
    est.absorb(np.zeros(1, np.int64), np.array([0.5 + 1e-9]))  # a tiny but real change
    assert est.learning_progress()[0] > 0


# -- 4. untried_weight = 0 ---------------------------------------------------------------


def test_issue_input_4_untried_weight_zero_documented_and_reported() -> None:
    # Task a failed 50 times, task b never tried.  untried_weight=0, uniform_mix=0:
    # the LP rule gives b nothing and nothing else does, so [1.0, 0.0] for ever --
    # what the docstring now says, and a configuration that is warned about.
    with pytest.warns(RuntimeWarning, match="untried_weight=0 with uniform_mix=0"):
        cur = LearningProgressCurriculum(["a", "b"], uniform_mix=0.0, untried_weight=0.0)
    cur.update(online([0] * 50, [0] * 50))
    assert cur.distribution().probabilities.tolist() == [1.0, 0.0]
    assert "never samples" in learning_progress_setting_error(uniform_mix=0.0, untried_weight=0.0)
    # uniform_mix 0.1: b gets 0.1 / 2 = 0.05, a 0.9 * 1 + 0.05 = 0.95.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mixed = LearningProgressCurriculum(["a", "b"], uniform_mix=0.1, untried_weight=0.0)
        # untried_weight 1: b keeps its uniform share 1/2, a (measured, LP 0, success 0) the rest.
        share = LearningProgressCurriculum(["a", "b"], uniform_mix=0.0, untried_weight=1.0)
        evaluated = LearningProgressCurriculum(["a", "b"], uniform_mix=0.0, untried_weight=0.0,
                                               success_source="evaluation", evaluation_interval_steps=10)
    del evaluated
    for c in (mixed, share):
        c.update(online([0] * 50, [0] * 50))
    assert mixed.distribution().probabilities.tolist() == pytest.approx([0.95, 0.05], abs=1e-15)
    assert share.distribution().probabilities.tolist() == [0.5, 0.5]
    assert learning_progress_setting_error(uniform_mix=0.1, untried_weight=0.0) is None
    assert learning_progress_setting_error(uniform_mix=0.0, untried_weight=0.5) is None
    assert learning_progress_setting_error(uniform_mix=0.0, untried_weight=0.0, success_source="evaluation") is None


# -- properties: the combiners on any real matrix ---------------------------------------

ROW_KINDS = ("random", "identical", "opposite", "zero", "inf", "nan", "scaled_copy")


@st.composite
def gradient_matrices(draw):
    t = draw(st.integers(1, 12))
    p = draw(st.one_of(st.integers(1, 8), st.integers(9, 10_000)))
    kinds = draw(st.lists(st.sampled_from(ROW_KINDS), min_size=t, max_size=t))
    exponents = draw(st.lists(st.integers(-30, 30), min_size=t, max_size=t))
    same_scale = draw(st.booleans())
    dtype = draw(st.sampled_from([torch.float64, torch.float32]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((t, p))
    if same_scale:
        exponents = [exponents[0]] * t
    for i, kind in enumerate(kinds):
        j = int(rng.integers(0, i)) if i else None
        if kind == "identical" and j is not None:
            g[i] = g[j]
        elif kind == "opposite" and j is not None:
            g[i] = -g[j]
        elif kind == "scaled_copy" and j is not None:
            g[i] = g[j] * 10.0 ** exponents[i] / 10.0 ** exponents[j] * rng.choice([-2.0, 0.5])
        elif kind == "zero":
            g[i] = 0.0
    g *= 10.0 ** np.asarray(exponents, dtype=np.float64)[:, None]
    for i, kind in enumerate(kinds):
        if kind in ("inf", "nan"):
            g[i, int(rng.integers(0, p))] = {"inf": rng.choice([INF, -INF]), "nan": NAN}[kind]
    return torch.tensor(g, dtype=dtype)


def _finite_rows(grads: torch.Tensor) -> np.ndarray:
    return torch.isfinite(grads).all(dim=1).numpy()


def exact_min_norm_sq(vectors: np.ndarray) -> float:
    """min ||sum a_i v_i||^2 over the simplex, by enumerating supports (exact for small K).

    The optimum is the affine min-norm point of its support S with positive
    weights, so the smallest such value over all subsets S is the minimum.
    """
    gram = vectors @ vectors.T
    k = gram.shape[0]
    best = float(np.min(np.diagonal(gram)))
    for size in range(2, k + 1):
        for support in itertools.combinations(range(k), size):
            idx = list(support)
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = gram[np.ix_(idx, idx)]
            kkt[:size, size] = kkt[size, :size] = 1.0
            rhs = np.zeros(size + 1)
            rhs[size] = 1.0
            mu = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:size]
            if (mu >= -1e-12).all():
                mu = np.maximum(mu, 0.0) / np.maximum(mu, 0.0).sum()
                point = mu @ vectors[idx]
                best = min(best, float(point @ point))
    return best


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(grads=gradient_matrices(), name=st.sampled_from(sorted(COMBINERS)))
def test_every_combiner_returns_a_finite_weighted_sum_of_the_finite_rows(grads: torch.Tensor, name: str) -> None:
    check_finite_weighted_sum(grads, name)


def check_finite_weighted_sum(grads: torch.Tensor, name: str) -> None:
    t = grads.shape[0]
    losses = torch.rand(t, generator=torch.Generator().manual_seed(t)) + 0.1
    c = combiner(name, t)
    out = c(grads, losses)
    finite = _finite_rows(grads)
    assert out.dtype == grads.dtype and out.shape == (grads.shape[1],)
    assert torch.isfinite(out).all()
    assert c.last_usable.tolist() == finite.tolist()
    weights = c.last_weights.numpy()
    assert np.isfinite(weights).all() and (weights[~finite] == 0).all()
    # The combined gradient is the reported weights times the rows actually used.
    g = grads.double().numpy()[finite]
    scale = max(float(np.abs(g).max()) if g.size else 0.0, 1e-300)
    expected = weights[finite] @ (g / scale)
    size = float(np.abs(weights[finite]) @ np.abs(g / scale).max(axis=1)) if g.size else 0.0
    tol = (1e-5 if grads.dtype == torch.float32 else 1e-12) * max(size, 1.0) * np.sqrt(grads.shape[1])
    assert np.abs(out.double().numpy() / scale - expected).max(initial=0.0) <= tol


@SETTINGS
@given(grads=gradient_matrices())
def test_mgda_is_the_min_norm_point_of_the_hull(grads: torch.Tensor) -> None:
    check_mgda_min_norm(grads)


def check_mgda_min_norm(grads: torch.Tensor) -> None:
    finite = _finite_rows(grads)
    if grads.shape[0] > 10:
        grads = grads[:10]
        finite = finite[:10]
    c = combiner("mgda", grads.shape[0])
    out = c(grads).double().numpy()
    weights = c.last_weights.numpy()
    if not finite.any():
        assert (out == 0).all()
        return
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0, abs=1e-6)
    v = grads.double().numpy()[finite]
    scale = float(np.linalg.norm(v, axis=1).max())
    if scale == 0:
        assert (out == 0).all()
        return
    exact = exact_min_norm_sq(v / scale)
    got = float((out / scale) @ (out / scale))
    tol = 5e-6 if grads.dtype == torch.float32 else 1e-10
    assert exact - 1e-12 <= got + tol and got <= exact + tol


@SETTINGS
@given(grads=gradient_matrices().filter(lambda g: g.shape[0] >= 2).map(lambda g: g[:2]))
def test_pcgrad_two_tasks_never_points_against_a_task(grads: torch.Tensor) -> None:
    c = combiner("pcgrad", 2)
    out = c(grads).double().numpy()
    finite = _finite_rows(grads)
    g = grads.double().numpy()
    norms = [float(np.linalg.norm(g[i])) if finite[i] else 0.0 for i in range(2)]
    scale = max(max(norms), 1e-300)
    eps = 1e-5 if grads.dtype == torch.float32 else 1e-12
    for i in range(2):
        if finite[i] and norms[i] > 0:
            inner = float((out / scale) @ (g[i] / scale))
            assert inner >= -eps * (norms[i] / scale) * (sum(norms) / scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1.0, 1e30])
@pytest.mark.parametrize("name", sorted(COMBINERS))
def test_large_matrices_on_the_torch_path(dtype: torch.dtype, scale: float, name: str) -> None:
    # 8 x 9000 > SMALL_GRAM: the Gram matrix is computed by torch in the gradients' dtype
    # (float32 squares of 1e30 overflow, of 1e-30 underflow: the rescaled rare path).
    rng = np.random.default_rng(int(-np.log10(scale)) + 100)
    g = rng.standard_normal((8, 9000))
    g[3] = g[1]  # identical
    g[4] = -g[2]  # opposite
    g[5] = 0.0  # zero
    g[6, 17] = np.inf  # non-finite
    g[7] *= 1e-3  # a smaller row
    grads = torch.tensor(g * scale, dtype=dtype)
    check_finite_weighted_sum(grads, name)
    if name == "mgda":
        check_mgda_min_norm(grads)


def test_property_strategy_reaches_the_edges() -> None:
    # The hypothesis runs above include zero, identical, opposite and non-finite rows at
    # 1e-30..1e30; spot-check the hardest corner directly: float32 rows 60 orders apart.
    g = torch.tensor([[1e30, 0.0, 1e30], [-1e-30, 1e-30, 0.0]], dtype=torch.float32)
    for name in sorted(COMBINERS):
        c = combiner(name, 2)
        out = c(g, torch.tensor([1.0, 2.0]))
        assert torch.isfinite(out).all(), name
    out = combiner("pcgrad", 2)(g).double()
    assert float(out @ g[0].double()) >= 0 and float(out @ g[1].double()) >= -1e-6 * 1e-30 * float(out.norm())


# -- properties: the sampler -----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    lp=st.lists(st.one_of(st.just(0.0), st.floats(1e-300, 1.0), st.floats(0.1, 0.1 + 1e-12)), min_size=1, max_size=10),
    success=st.lists(st.sampled_from([0.0, 0.2, 1e-300]), min_size=10, max_size=10),
    measured=st.lists(st.booleans(), min_size=10, max_size=10),
    copies=st.lists(st.integers(0, 9), min_size=1, max_size=10),
    temperature=st.floats(0.05, 5),
    mix=st.sampled_from([0.0, 0.1, 0.5]),
    untried=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
)
def test_identical_inputs_get_identical_probabilities(lp, success, measured, copies, temperature, mix, untried) -> None:
    n = len(lp)
    lp_a = np.array(lp) * np.array(measured[:n])
    succ = np.array(success[:n]) * np.array(measured[:n])
    meas = np.array(measured[:n])
    # Append copies of some tasks: they must get exactly their original's probability.
    src = [c % n for c in copies]
    lp_b, succ_b, meas_b = (np.concatenate([a, a[src]]) for a in (lp_a, succ, meas))
    p = learning_progress_probabilities(lp_b, succ_b, meas_b, temperature=temperature, uniform_mix=mix,
                                        untried_weight=untried)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    for k, s in enumerate(src):
        assert p[n + k] == p[s]


@settings(max_examples=40, deadline=None)
@given(
    histories=st.lists(st.lists(st.booleans(), min_size=0, max_size=25), min_size=1, max_size=4),
    duplicate=st.lists(st.integers(0, 3), min_size=1, max_size=3),
    batch=st.integers(1, 9),
    order_seed=st.integers(0, 1000),
    mix=st.sampled_from([0.0, 0.1]),
    untried=st.sampled_from([0.5, 1.0]),
)
def test_tasks_with_identical_histories_get_identical_probabilities(histories, duplicate, batch, order_seed, mix,
                                                                    untried) -> None:
    # Tasks n.. repeat the histories of tasks `duplicate`; every batch carries the same
    # slice of each task's history, interleaved in a random order (each task's own order kept).
    src = [d % len(histories) for d in duplicate]
    all_histories = histories + [histories[s] for s in src]
    n = len(all_histories)
    cur = build_curriculum("learning_progress", [f"t{i}" for i in range(n)], uniform_mix=mix, untried_weight=untried)
    rng = np.random.default_rng(order_seed)
    longest = max(len(h) for h in all_histories)
    for start in range(0, longest, batch):
        slots = [t for t, h in enumerate(all_histories) for _ in h[start : start + batch]]
        rng.shuffle(slots)
        pos = [start] * n
        task, success = [], []
        for t in slots:
            task.append(t)
            success.append(all_histories[t][pos[t]])
            pos[t] += 1
        if task:
            cur.update(online(task, success))
    p = cur.distribution().probabilities
    lp = cur.learning_progress()
    for k, s in enumerate(src):
        assert p[len(histories) + k] == p[s]
        assert lp[len(histories) + k] == lp[s]
