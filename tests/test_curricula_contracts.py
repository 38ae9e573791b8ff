"""Small contracts of the curricula package that the mutation run (benchmarks/mutation.py, a seeded
sample of the package's mutants) found unchecked: dtypes of counters, keys of the figures sent to
MLflow, state round trips, refusals at the edge of a range, and the words of an error."""

from __future__ import annotations

import numpy as np
import pytest

from curricula import EpisodeOutcomes, LearningProgressCurriculum, UniformCurriculum
from curricula.affinity import TaskAffinity
from curricula.data_sharing import RunningThreshold, share_transitions
from curricula.grouping import Grouping, choose_groupings
from curricula.success_estimates import SuccessEstimates, reweight


def _batch(task, success, items=None) -> EpisodeOutcomes:
    return EpisodeOutcomes(task=np.array(task), success=np.array(success, bool),
                           episode_return=np.array(success, float), length=np.ones(len(task), np.int64),
                           items_obtained=None if items is None else np.array(items, bool))


def test_scheduler_counters_and_version_start_as_documented() -> None:
    c = UniformCurriculum(["a", "b"], ["a", "b", "x"])
    assert c.successes.dtype == np.int64 and c.distribution().version == 0
    c.update(_batch([0, 1], [True, False], [[True, False, True], [False, False, False]]))
    state = c.state_dict()
    state["recent_bonus_return"] = 0.25
    d = UniformCurriculum(["a", "b"], ["a", "b", "x"])
    d.load_state_dict(state)
    assert d.successes.dtype == np.int64 and d.successes.tolist() == [1, 0]
    assert d.recent_bonus_return == 0.25
    metrics = d.metrics()
    assert metrics["num_items_obtained_ever"] == 2.0
    assert d.bonus_metrics(np.zeros(3, bool))["bonus/return_per_episode"] == 0.25


def test_max_random_baseline_reaches_the_estimates() -> None:
    c = LearningProgressCurriculum(["a", "b"], max_random_baseline=0.5)
    assert c.estimates.max_random_baseline == 0.5


def test_learning_progress_uses_theta_on_both_rates() -> None:
    est = SuccessEstimates(3)
    est.absorb(np.array([0, 0, 1, 2, 0]), np.array([1.0, 0.0, 1.0, 0.0, 1.0]))
    for theta in (0.1, 0.35):
        expected = np.abs(reweight(est.p_fast, theta) - reweight(est.p_slow, theta))
        np.testing.assert_allclose(est.learning_progress(theta), expected, atol=1e-12)


def test_outcome_batches_keep_their_columns() -> None:
    empty = EpisodeOutcomes.empty(num_items=3)
    assert empty.items_obtained.shape == (0, 3) and empty.length.dtype == np.int64 and len(empty) == 0
    joined = EpisodeOutcomes.concat([_batch([0], [True], [[True, False, False]]),
                                     _batch([1], [False], [[False, False, True]])])
    assert joined.items_obtained.tolist() == [[True, False, False], [False, False, True]]
    one = EpisodeOutcomes(task=np.array(1), success=np.array(True), episode_return=np.array(1.0), length=np.array(3))
    assert len(one) == 1
    with pytest.raises(ValueError, match="^EpisodeOutcomes.concat: cannot mix evaluation and training batches$"):
        EpisodeOutcomes.concat([EpisodeOutcomes.empty(evaluation=True), EpisodeOutcomes.empty()])


def test_outcomes_accept_the_edges_of_their_ranges() -> None:
    # success as 0/1 integers, and an episode of length 0 (reset then cut), are valid
    EpisodeOutcomes(task=np.array([0, 1]), success=np.array([0, 1]), episode_return=np.zeros(2),
                    length=np.array([0, 5])).validate(num_tasks=2)


def test_affinity_counts_are_integers_and_its_state_round_trips() -> None:
    a = TaskAffinity(["a", "b"], lr_normalized=True)
    a.update([1.0, 1.0], np.array([[0.9, 1.1], [1.0, 0.8]]), lr=0.1)
    assert a.counts.dtype == np.int64
    b = TaskAffinity(["a", "b"])
    b.load_state_dict(a.state_dict())
    assert b.lr_normalized is True


def test_data_sharing_refuses_a_source_id_equal_to_the_number_of_tasks() -> None:
    with pytest.raises(ValueError, match=r"candidate_source has task ids outside \[0, 2\)"):
        share_transitions("all", [np.zeros(1), np.zeros(1)], [np.zeros(1), np.zeros(1)],
                          [np.array([2]), np.array([0])])


def test_cds_names_every_task_without_data() -> None:
    r = RunningThreshold(3, window=4, task_names=["log", "dirt", "sand"])
    r.update([np.array([1.0]), np.zeros(0), np.zeros(0)])
    with pytest.raises(ValueError, match="^dirt, sand: cds needs values of the task's own data to set its threshold, "
                                         "and this task has none; collect data for it or use sharing 'all'$"):
        r.thresholds()


def test_grouping_lists_and_refuses_repeated_names() -> None:
    assert Grouping(groups=(("a", "b"), ("c",)), score=1.0, served_by={"a": 0, "b": 0, "c": 1}).as_lists() == [
        ["a", "b"], ["c"]]
    with pytest.raises(ValueError, match=r"task_names must be unique, got \['a', 'a'\]"):
        choose_groupings(np.zeros((2, 2)), ["a", "a"], max_groups=2)
