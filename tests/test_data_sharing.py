"""The none / all / cds data-sharing rules on hand-made Q-values."""

from __future__ import annotations

import numpy as np
import pytest

from curricula.data_sharing import RunningThreshold, share_transitions


def _two_tasks():
    # Task 0's own Q: 1..5; task 1's own Q: 10, 20.
    own = [np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([10.0, 20.0])]
    # Candidates for task 0 come from task 1, and vice versa.
    cand_q = [np.array([0.5, 4.0, 5.0, 6.0]), np.array([14.0, 15.0, 9.0])]
    cand_src = [np.array([1, 1, 1, 1]), np.array([0, 0, 0])]
    return own, cand_q, cand_src


def test_cds_threshold_is_the_kth_percentile_of_own_q_and_ties_are_accepted() -> None:
    own, q, src = _two_tasks()
    d = share_transitions("cds", own, q, src, percentile=75)
    # Task 0: 75th percentile of 1..5 is 4 (exactly an order statistic): 4.0 is a tie, accepted.
    # Task 1: 75th percentile of [10, 20] = 10 + 0.75 * 10 = 17.5 (linear interpolation).
    assert d.thresholds.tolist() == [4.0, 17.5]
    assert d.masks[0].tolist() == [False, True, True, True]
    assert d.masks[1].tolist() == [False, False, False]
    assert d.accepted_fraction[0, 1] == 0.75 and d.accepted_fraction[1, 0] == 0.0
    assert np.diag(d.accepted_fraction).tolist() == [1.0, 1.0]
    assert d.accepted_counts().tolist() == [3, 0]


def test_cds_percentile_edges() -> None:
    own, q, src = _two_tasks()
    low = share_transitions("cds", own, q, src, percentile=0)  # threshold = min of own Q
    assert low.thresholds.tolist() == [1.0, 10.0]
    assert low.masks[0].tolist() == [False, True, True, True] and low.masks[1].tolist() == [True, True, False]
    high = share_transitions("cds", own, q, src, percentile=100)  # threshold = max of own Q
    assert high.thresholds.tolist() == [5.0, 20.0]
    assert high.masks[0].tolist() == [False, False, True, True] and not high.masks[1].any()
    # One own transition: every percentile is that value.
    one = share_transitions("cds", [np.array([2.0]), np.array([0.0])], [np.array([2.0, 1.9]), np.array([])],
                            [np.array([1, 1]), np.array([], dtype=int)], percentile=37)
    assert one.masks[0].tolist() == [True, False]
    # Task 1 was offered nothing from task 0: NaN, not 0.
    assert np.isnan(one.accepted_fraction[1, 0])


def test_all_equal_own_q_accepts_exact_ties_only() -> None:
    d = share_transitions("cds", [np.full(4, 3.0)], [np.array([3.0, 2.999, 3.001])], [np.array([0, 0, 0])], 50)
    assert d.masks[0].tolist() == [True, False, True]


def test_none_and_all() -> None:
    own, q, src = _two_tasks()
    none = share_transitions("none", own, q, src)
    assert not any(m.any() for m in none.masks) and none.accepted_fraction[0, 1] == 0.0
    assert np.isnan(none.thresholds).all()
    everything = share_transitions("all", own, q, src)
    assert all(m.all() for m in everything.masks) and everything.accepted_fraction[1, 0] == 1.0


def test_accepted_fraction_per_source_task() -> None:
    # Three tasks; task 0 is offered 2 from task 1 (one passes) and 2 from task 2 (both pass).
    d = share_transitions("cds", [np.array([0.0, 1.0]), np.array([0.0]), np.array([0.0])],
                          [np.array([0.5, 2.0, 1.0, 3.0]), np.array([]), np.array([])],
                          [np.array([1, 1, 2, 2]), np.array([], dtype=int), np.array([], dtype=int)], percentile=100)
    assert d.accepted_fraction[0].tolist() == [1.0, 0.5, 1.0]


def test_cds_refuses_empty_own_data_naming_the_task() -> None:
    with pytest.raises(ValueError, match="stick: cds needs Q-values of the task's own data"):
        share_transitions("cds", [np.array([1.0]), np.array([])], [np.array([]), np.array([1.0])],
                          [np.array([], dtype=int), np.array([0])], task_names=["log", "stick"])
    # 'all' needs no own data.
    share_transitions("all", [np.array([1.0]), np.array([])], [np.array([]), np.array([1.0])],
                      [np.array([], dtype=int), np.array([0])])


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "some"}, r"unknown sharing mode 'some'; valid choices: \['none', 'all', 'cds', 'cds_basic'\]"),
    ({"percentile": 101}, r"percentile must be in \[0, 100\]"),
])
def test_bad_arguments_are_refused(kwargs, message) -> None:
    own, q, src = _two_tasks()
    args = {"mode": "cds", "own_q": own, "candidate_q": q, "candidate_source": src} | kwargs
    with pytest.raises(ValueError, match=message):
        share_transitions(**args)


def test_nan_q_values_are_refused() -> None:
    with pytest.raises(ValueError, match="task 0: candidate_q contains NaN"):
        share_transitions("cds", [np.array([1.0])], [np.array([np.nan])], [np.array([0])])


# --------------------------------------------------------------------------- the running threshold
def test_running_percentile_pools_batches_and_drops_the_oldest() -> None:
    r = RunningThreshold(num_tasks=2, window=4, percentile=50, task_names=["log", "stick"])
    r.update([np.array([1.0, 2.0, 3.0]), np.array([10.0])])
    # log keeps [1, 2, 3]: median 2; stick keeps [10].
    assert r.thresholds().tolist() == [2.0, 10.0]
    r.update([np.array([4.0, 5.0]), np.array([20.0, 30.0, 40.0, 50.0, 60.0])])
    # log: window 4 keeps the newest [2, 3, 4, 5] (1 dropped): median 3.5. stick: only the newest
    # 4 of that update survive, [30, 40, 50, 60]: median 45 (10 and 20 dropped).
    assert r.thresholds().tolist() == [3.5, 45.0]


def test_running_percentile_known_answers_and_ties() -> None:
    r = RunningThreshold(1, window=8, percentile=25)
    r.update([np.array([3.0, 1.0])])
    r.update([np.array([2.0, 2.0, 2.0, 5.0])])
    # Kept [3, 1, 2, 2, 2, 5], sorted [1, 2, 2, 2, 3, 5]: the 25th percentile sits at rank 1.25 -> 2 (a tie run).
    assert r.thresholds().tolist() == [2.0]
    # A candidate equal to the threshold is accepted (ties join), just below is not.
    d = share_transitions("cds", [np.zeros(0)], [np.array([2.0, 1.999, 7.0])], [np.array([0, 0, 0])],
                          thresholds=r.thresholds())
    assert d.masks[0].tolist() == [True, False, True] and d.thresholds.tolist() == [2.0]
    # Interpolation between order statistics: 90th percentile of [1, 2, 2, 2, 3, 5] = 3 + 0.5 * (5 - 3).
    r90 = RunningThreshold(1, window=8, percentile=90)
    r90.load_state_dict({**r.state_dict(), "percentile": 90.0})
    assert r90.thresholds().tolist() == [4.0]


def test_running_mean_for_cds_basic() -> None:
    r = RunningThreshold(2, window=3, statistic="mean")
    r.update([np.array([1.0, 2.0]), np.array([-1.0])])
    r.update([np.array([6.0]), np.array([1.0, 3.0, 5.0, 7.0])])
    # [1, 2, 6] -> 3; [3, 5, 7] -> 5.
    assert r.thresholds().tolist() == [3.0, 5.0]


def test_running_threshold_refuses_a_task_without_own_data_naming_it() -> None:
    r = RunningThreshold(3, window=4, task_names=["log", "planks", "stick"])
    r.update([np.array([1.0]), np.zeros(0), np.array([2.0])])
    with pytest.raises(ValueError, match="planks: cds needs values of the task's own data"):
        r.thresholds()
    with pytest.raises(ValueError, match="log: own-data values contain NaN"):
        r.update([np.array([np.nan]), np.zeros(0), np.zeros(0)])
    with pytest.raises(ValueError, match=r"unknown threshold statistic 'median'; valid choices: \['percentile', 'mean'\]"):
        RunningThreshold(1, window=2, statistic="median")


def test_running_threshold_state_round_trip() -> None:
    a = RunningThreshold(2, window=3, percentile=50)
    a.update([np.array([1.0, 2.0, 3.0, 4.0]), np.array([5.0])])
    b = RunningThreshold(2, window=3, percentile=50)
    b.load_state_dict(a.state_dict())
    a.update([np.array([9.0]), np.array([6.0])])
    b.update([np.array([9.0]), np.array([6.0])])
    assert a.thresholds().tolist() == b.thresholds().tolist() == [4.0, 5.5]
    with pytest.raises(ValueError, match="does not fit window=5"):
        RunningThreshold(2, window=5).load_state_dict(a.state_dict())
