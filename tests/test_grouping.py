"""Group selection from affinities: known answers, overlapping groups, beam vs exhaustive."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from curricula.grouping import EXHAUSTIVE_MAX_TASKS, choose_groupings, score_grouping

NAMES6 = [f"t{i}" for i in range(6)]


def planted(blocks: list[list[int]], n: int, within: float = 1.0, across: float = -1.0) -> np.ndarray:
    label = np.empty(n, dtype=int)
    for g, block in enumerate(blocks):
        label[block] = g
    a = np.where(label[:, None] == label[None, :], within, across)
    np.fill_diagonal(a, 0.0)
    return a


def test_obvious_two_blocks_are_chosen() -> None:
    a = planted([[0, 2, 4], [1, 3, 5]], 6)
    for max_groups in (2, 3, 6):
        best = choose_groupings(a, NAMES6, max_groups=max_groups, top_k=3)
        assert best[0].groups == (("t0", "t2", "t4"), ("t1", "t3", "t5"))
        assert best[0].score == pytest.approx(6.0)  # every task gets mean affinity 1 from its group
        assert [g.score for g in best] == sorted((g.score for g in best), reverse=True)
        assert len({g.groups for g in best}) == len(best)
    # One group only: everyone together, each task gets (2 * 1 + 3 * -1) / 5 = -0.2.
    alone = choose_groupings(a, NAMES6, max_groups=1)[0]
    assert alone.groups == (tuple(NAMES6),) and alone.score == pytest.approx(-1.2)


def test_a_task_may_sit_in_two_groups() -> None:
    # t0 helps t1 (1.0) but t1 hurts t0 (-1.0); t2 is neutral.  With 2 groups the best is
    # {t0, t1} serving t1 and {t0, t2} serving t0 and t2: score 1 (any partition scores <= 0.5).
    a = np.zeros((3, 3))
    a[0, 1], a[1, 0] = 1.0, -1.0
    best = choose_groupings(a, ["t0", "t1", "t2"], max_groups=2)[0]
    assert best.groups == (("t0", "t1"), ("t0", "t2"))
    assert best.score == pytest.approx(1.0)
    assert best.served_by == {"t0": 1, "t1": 0, "t2": 1}


def brute_force_best(a: np.ndarray, max_groups: int) -> float:
    """Every set of <= max_groups non-empty groups that covers all tasks (tiny n only)."""
    n = a.shape[0]
    names = [f"t{i}" for i in range(n)]
    subsets = [s for r in range(1, n + 1) for s in itertools.combinations(range(n), r)]
    best = -np.inf
    for k in range(1, max_groups + 1):
        for groups in itertools.combinations(subsets, k):
            if set().union(*groups) == set(range(n)):
                best = max(best, score_grouping(a, names, [[names[i] for i in g] for g in groups]).score)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_exhaustive_matches_brute_force_on_random_matrices(seed: int) -> None:
    a = np.random.default_rng(seed).normal(size=(4, 4))
    names = [f"t{i}" for i in range(4)]
    for max_groups in (1, 2, 3):
        assert choose_groupings(a, names, max_groups, method="exhaustive")[0].score == pytest.approx(
            brute_force_best(a, max_groups)
        )


@pytest.mark.parametrize("seed", range(6))
def test_beam_agrees_with_exhaustive_on_small_planted_problems(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 8
    labels = rng.permutation(np.arange(n) % 3)
    blocks = [list(np.flatnonzero(labels == g)) for g in range(3)]
    a = planted(blocks, n, within=0.5, across=-0.5) + 0.2 * rng.normal(size=(n, n))
    names = [f"t{i}" for i in range(n)]
    exact = choose_groupings(a, names, 3, method="exhaustive")[0]
    beam = choose_groupings(a, names, 3, method="beam", beam_width=32)[0]
    assert beam.groups == exact.groups and beam.score == pytest.approx(exact.score)
    # On unstructured matrices the beam is never better than the exact optimum.
    noise = rng.normal(size=(n, n))
    assert choose_groupings(noise, names, 3, method="beam")[0].score <= (
        choose_groupings(noise, names, 3, method="exhaustive")[0].score + 1e-9
    )


def test_twelve_tasks_exhaustive_is_fast_and_beam_takes_over_beyond() -> None:
    names = [f"t{i:02d}" for i in range(EXHAUSTIVE_MAX_TASKS)]
    a = planted([list(range(0, 12, 3)), list(range(1, 12, 3)), list(range(2, 12, 3))], 12)
    started = time.perf_counter()
    best = choose_groupings(a, names, max_groups=3, top_k=4)
    assert time.perf_counter() - started < 20
    assert best[0].groups == tuple(tuple(names[i] for i in range(g, 12, 3)) for g in range(3))
    names16 = [f"t{i:02d}" for i in range(16)]
    a16 = planted([list(range(0, 16, 2)), list(range(1, 16, 2))], 16)
    assert choose_groupings(a16, names16, max_groups=2)[0].score == pytest.approx(16.0)
    with pytest.raises(ValueError, match="at most 12 tasks"):
        choose_groupings(a16, names16, max_groups=2, method="exhaustive")


def test_bad_input_names_the_problem() -> None:
    a = np.zeros((3, 3))
    names = ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"affinity must be \[2 x 2\]"):
        choose_groupings(a, ["a", "b"], 2)
    with pytest.raises(ValueError, match="valid choices"):
        choose_groupings(a, names, 2, method="greedy")
    with pytest.raises(ValueError, match="max_groups must be a positive int"):
        choose_groupings(a, names, 0)
    bad = a.copy()
    bad[0, 2] = np.nan
    with pytest.raises(ValueError, match=r"affinity\[a -> c\] is not finite"):
        choose_groupings(bad, names, 2)
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['z'\]"):
        score_grouping(a, names, [["a", "z"], ["b", "c"]])
    with pytest.raises(ValueError, match=r"\['c'\] are in no group"):
        score_grouping(a, names, [["a", "b"]])
