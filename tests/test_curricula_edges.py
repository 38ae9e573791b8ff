"""Known answers for the curriculum's sampling rule and exploration bonus at the edges of their
parameters, where the mutation run (benchmarks/mutation.py) found one-token changes that the other
tests let through: untried_weight 0 and other than 1, a measured task that no rule qualifies,
every measured task reserved, a rate exactly at the bonus threshold."""

from __future__ import annotations

import numpy as np
import pytest

from curricula import EpisodeOutcomes, LearningProgressCurriculum
from curricula.learning_progress import learning_progress_setting_error
from curricula.exploration_bonus import ExplorationBonus
from curricula.sampling import learning_progress_probabilities as lp_probabilities


def _p(lp, success, measured, **kw) -> np.ndarray:
    return lp_probabilities(np.asarray(lp, float), np.asarray(success, float), np.asarray(measured, bool), **kw)


@pytest.mark.parametrize("untried_weight", [0.0, 0.5, 1.0, 3.0])
def test_nothing_measured_is_uniform_whatever_the_untried_weight(untried_weight: float) -> None:
    # Step 3's reserves are all there is when nothing is measured; with untried_weight = 0 they are
    # all 0, and 0/0 must not be what the tasks get: the rule says uniform.
    np.testing.assert_array_equal(_p([0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], untried_weight=untried_weight),
                                  np.full(4, 0.25))


def test_one_measured_task_shares_what_the_untried_leave() -> None:
    # 4 tasks, task 0 measured; untried_weight 0.5: each untried task keeps 0.5/4 = 0.125,
    # task 0 (the only one in step 2's pool) gets 1 - 3 * 0.125 = 0.625.
    np.testing.assert_allclose(_p([0.2, 0, 0, 0], [0.5, 0, 0, 0], [1, 0, 0, 0], untried_weight=0.5),
                               [0.625, 0.125, 0.125, 0.125])


def test_an_unqualified_measured_task_is_the_pool_and_untried_tasks_stay_out_of_it() -> None:
    # Task 0 measured with LP 0 and success 0: no task qualifies, so the pool is the measured
    # task alone (step 1), which gets what the two untried tasks (1/3 each) leave: 1/3.
    np.testing.assert_allclose(_p([0, 0, 0], [0, 0, 0], [1, 0, 0]), [1 / 3, 1 / 3, 1 / 3])
    # With untried_weight 0.5 the untried keep 1/6 each and task 0 gets 2/3.
    np.testing.assert_allclose(_p([0, 0, 0], [0, 0, 0], [1, 0, 0], untried_weight=0.5), [2 / 3, 1 / 6, 1 / 6])


def test_every_measured_task_reserved_splits_by_the_reserves() -> None:
    # Both tasks measured and lifted (reserve weights 1 and 0.5 -> shares 0.5 and 0.25, total 0.75):
    # the reserves are all there is, normalised: [2/3, 1/3].
    p = _p([0, 0], [0, 0], [1, 1], reserve_weight=np.array([1.0, 0.5]))
    np.testing.assert_allclose(p, [2 / 3, 1 / 3])
    # Reserves above 1 in total are scaled down to 1 (3 tasks x weight 2 = 2): equal thirds.
    np.testing.assert_allclose(_p([0, 0, 0], [0, 0, 0], [1, 1, 1], reserve_weight=np.full(3, 2.0)), np.full(3, 1 / 3))


def test_scheduler_with_untried_weight_zero_and_nothing_measured_samples_uniformly() -> None:
    with pytest.warns(RuntimeWarning):
        c = LearningProgressCurriculum(["a", "b", "c"], untried_weight=0.0, uniform_mix=0.0)
    np.testing.assert_array_equal(c.distribution().probabilities, np.full(3, 1 / 3))


def _batch(task, success) -> "EpisodeOutcomes":
    return EpisodeOutcomes(task=np.array(task), success=np.array(success, bool),
                           episode_return=np.array(success, float), length=np.ones(len(task), np.int64))


def test_a_prerequisite_exactly_at_the_threshold_counts_as_reliable() -> None:
    # "succeeds reliably" is success rate >= the bonus threshold: at exactly 0.5 the next task
    # in the chain is at the frontier.  alpha_fast 0.5: a success then a failure leave 0.5.
    c = LearningProgressCurriculum(["a", "b", "c"], alpha_fast=0.5, prerequisites=[[], [0], [1]],
                                   bonus={"mode": "dynamic", "threshold": 0.5})
    c.update(_batch([0], [True]))
    c.update(_batch([0], [False]))
    assert c.estimates.success_rate[0] == 0.5
    assert c.at_frontier().tolist() == [False, True, False]


def test_the_scheduler_passes_every_setting_to_the_sampling_rule() -> None:
    # Each setting away from the rule's default (temperature 1, uniform_mix 0, untried_weight 1),
    # and one task never measured: the scheduler's distribution is the rule applied to its state.
    c = LearningProgressCurriculum(["a", "b", "c", "d"], temperature=0.3, uniform_mix=0.2, untried_weight=0.5,
                                   by_product_weight=0.0, frontier_weight=0.0)
    c.update(_batch([0, 0, 1, 1, 2, 2, 0, 1], [True, False, False, False, True, True, True, False]))
    c.update(_batch([0, 1, 2, 0], [False, True, True, True]))
    est = c.estimates
    assert (est.measurements[:3] > 0).all() and est.measurements[3] == 0
    expected = lp_probabilities(c.learning_progress(), est.success_rate, est.measurements > 0, temperature=0.3,
                                uniform_mix=0.2, untried_weight=0.5, reserve_weight=np.zeros(4))
    np.testing.assert_array_equal(c.distribution().probabilities, expected)
    # and those settings matter here: the rule's defaults give another distribution
    default = lp_probabilities(c.learning_progress(), est.success_rate, est.measurements > 0)
    for setting in ({"temperature": 0.3}, {"uniform_mix": 0.2}, {"untried_weight": 0.5}):
        others = {"temperature": 0.3, "uniform_mix": 0.2, "untried_weight": 0.5}
        others.pop(next(iter(setting)))
        assert not np.allclose(expected, lp_probabilities(c.learning_progress(), est.success_rate,
                                                          est.measurements > 0, **others)), setting
    assert not np.allclose(expected, default)


def test_learning_progress_defaults_are_the_documented_ones() -> None:
    c = LearningProgressCurriculum(["a", "b"])
    assert (c.temperature, c.uniform_mix, c.untried_weight, c.by_product_weight, c.frontier_weight) == (
        1.0, 0.1, 1.0, 1.0, 1.0)
    assert c.prerequisites is None and not c.at_frontier().any()


@pytest.mark.parametrize("kwargs", [
    {"uniform_mix": 0.0}, {"uniform_mix": 1.0}, {"by_product_weight": 0.0}, {"frontier_weight": 0.0},
    {"temperature": 1e-3}, {"untried_weight": 0.0, "uniform_mix": 0.5}, {"prerequisites": [[], [0], [1, 0]]},
])
def test_settings_at_their_edges_are_accepted(kwargs) -> None:
    c = LearningProgressCurriculum(["a", "b", "c"], **kwargs)
    for name, value in kwargs.items():
        assert getattr(c, name) == (value if name != "prerequisites" else [[], [0], [0, 1]])


@pytest.mark.parametrize("kwargs,message", [
    ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0"),
    ({"temperature": float("inf")}, "temperature must be a finite number > 0"),
    ({"uniform_mix": -0.01}, r"uniform_mix must be in \[0, 1\], got -0.01"),
    ({"uniform_mix": 1.01}, r"uniform_mix must be in \[0, 1\], got 1.01"),
    ({"untried_weight": -1e-9}, "untried_weight must be a finite number >= 0"),
    ({"untried_weight": float("nan")}, "untried_weight must be a finite number >= 0"),
    ({"by_product_weight": -1.0}, "by_product_weight must be a finite number >= 0, got -1.0"),
    ({"frontier_weight": float("inf")}, "frontier_weight must be a finite number >= 0, got inf"),
    ({"prerequisites": [[], [0]]}, r"prerequisites must list one entry per task \(3\), got 2"),
    ({"prerequisites": [[], [3], []]}, r"prerequisites name task ids outside 0..2: \[3\]"),
    ({"prerequisites": [[-1], [], []]}, r"prerequisites name task ids outside 0..2: \[-1\]"),
])
def test_settings_past_their_edges_are_refused_naming_the_field(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        LearningProgressCurriculum(["a", "b", "c"], **kwargs)


# -- the exploration bonus's item rule at its edges ---------------------------------------------------
# Items: two tasks (success rates 0.0 and 1.0 as goals) and two items that are never goals.
BONUS_RATE = np.array([0.0, 1.0, np.nan, np.nan])
BONUS_IS_TASK = np.array([True, True, False, False])


@pytest.mark.parametrize("threshold,obtained,expected", [
    # threshold 0: every rate is >= 0, so nothing is unreliable, non-task items included
    (0.0, [0, 0, 0.0, 0.3], [False, False, False, False]),
    # threshold 1: only a certain item stops paying; for a non-task item, obtained in every episode
    (1.0, [0, 0, 1.0, 0.999], [True, False, False, True]),
    # in between, at and just below it
    (0.25, [0, 0, 0.25, 0.2499], [True, False, False, True]),
])
def test_non_task_items_until_obtained_reliably_at_threshold_edges(threshold, obtained, expected) -> None:
    bonus = ExplorationBonus(mode="dynamic", threshold=threshold, items="all", non_task_items="until_obtained_reliably")
    assert bonus.bonus_items(BONUS_RATE, BONUS_IS_TASK, np.array(obtained)).tolist() == expected


def test_non_task_items_without_an_obtained_rate_count_as_never_obtained() -> None:
    bonus = ExplorationBonus(mode="dynamic", threshold=0.5, items="all")
    assert bonus.bonus_items(BONUS_RATE, BONUS_IS_TASK).tolist() == [True, False, True, True]
    # at threshold 0 a never-obtained item (rate 0) is already "reliable": nothing pays; an
    # unknown rate (NaN) would pay, so the missing rate must be read as 0, not as unknown
    at_zero = ExplorationBonus(mode="dynamic", threshold=0.0, items="all")
    assert at_zero.bonus_items(BONUS_RATE, BONUS_IS_TASK).tolist() == [False, False, False, False]
    # "always" ignores the rate and the threshold, even at threshold 0
    always = ExplorationBonus(mode="dynamic", threshold=0.0, items="all", non_task_items="always")
    assert always.bonus_items(BONUS_RATE, BONUS_IS_TASK, np.ones(4)).tolist() == [False, False, True, True]


def test_every_item_is_a_task_unless_told() -> None:
    bonus = ExplorationBonus(mode="dynamic", threshold=0.5, items="tasks")
    assert bonus.bonus_items(np.array([0.0, 0.5, np.nan])).tolist() == [True, False, True]
    assert ExplorationBonus(mode="static", items="tasks").bonus_items(np.zeros(3)).tolist() == [True] * 3
    off = ExplorationBonus(mode="off").bonus_items(np.zeros(3))
    assert off.dtype == bool and off.tolist() == [False] * 3
    assert bonus.bonus_items(np.array([0.0, 0.5, np.nan])).dtype == bool
    # is_task given as 0/1 numbers (e.g. read from a file) means the same as booleans
    dynamic_all = ExplorationBonus(mode="dynamic", threshold=0.5, items="all")
    for rule in (bonus, dynamic_all):
        from_numbers = rule.bonus_items(BONUS_RATE, np.array([1, 1, 0, 0]))
        assert from_numbers.dtype == bool  # a mask, usable to index the item list
        assert from_numbers.tolist() == rule.bonus_items(BONUS_RATE, BONUS_IS_TASK).tolist()


def test_bonus_settings_edges() -> None:
    assert ExplorationBonus(size=0.0).size == 0.0
    assert ExplorationBonus(threshold=0.0).threshold == 0.0 and ExplorationBonus(threshold=1.0).threshold == 1.0
    for bad, message in (({"size": -0.01}, "size must be a finite number >= 0, got -0.01"),
                         ({"size": float("inf")}, "size must be a finite number >= 0, got inf"),
                         ({"threshold": 1.01}, r"threshold must be in \[0, 1\], got 1.01"),
                         ({"threshold": -0.01}, r"threshold must be in \[0, 1\], got -0.01"),
                         ({"mode": "sometimes"}, "mode must be one of")):
        with pytest.raises(ValueError, match=message):
            ExplorationBonus(**bad)
    assert ExplorationBonus.from_config(None) == ExplorationBonus(mode="off")
    assert ExplorationBonus.from_config("static") == ExplorationBonus(mode="static")
    same = ExplorationBonus(threshold=0.3)
    assert ExplorationBonus.from_config(same) is same
    assert ExplorationBonus.from_config({"size": 0.2, "items": "all"}) == ExplorationBonus(size=0.2, items="all")
    assert same.as_dict() == {"mode": "dynamic", "size": 0.1, "threshold": 0.3, "items": "tasks",
                              "non_task_items": "until_obtained_reliably"}
    with pytest.raises(ValueError, match="bonus must be an ExplorationBonus, dict, mode name or None, got int"):
        ExplorationBonus.from_config(3)


def test_setting_error_names_the_one_setting_that_never_tries_a_task() -> None:
    message = learning_progress_setting_error(0.0, 0.0)
    assert message == ("untried_weight=0 with uniform_mix=0 never samples a task that was not tried before the "
                       "first update (its probability stays 0 for ever); set uniform_mix > 0 or untried_weight > 0")
    assert learning_progress_setting_error(0.0, 0.0, "online") == message
    assert learning_progress_setting_error(0.0, 0.0, "evaluation") is None  # evaluation measures every task
    assert learning_progress_setting_error(0.1, 0.0) is None
    assert learning_progress_setting_error(0.0, 0.5) is None
    assert learning_progress_setting_error(1.0, 1.0) is None


def test_the_scheduler_warns_the_caller_about_that_setting(recwarn) -> None:
    with pytest.warns(RuntimeWarning, match="untried_weight=0 with uniform_mix=0 never samples"):
        LearningProgressCurriculum(["a", "b"], untried_weight=0.0, uniform_mix=0.0)
    recwarn.clear()
    LearningProgressCurriculum(["a", "b"], untried_weight=0.0, uniform_mix=0.0, success_source="evaluation",
                               evaluation_interval_steps=1000)
    LearningProgressCurriculum(["a", "b"], untried_weight=0.0, uniform_mix=0.1)
    LearningProgressCurriculum(["a", "b"], untried_weight=0.5, uniform_mix=0.0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_config_holds_every_learning_progress_setting() -> None:
    c = LearningProgressCurriculum(["a", "b", "c"], temperature=0.5, uniform_mix=0.2, untried_weight=0.3,
                                   by_product_weight=0.4, frontier_weight=0.6, prerequisites=[[], [0], [0, 1]])
    config = c.config()
    assert {k: config[k] for k in ("temperature", "uniform_mix", "untried_weight", "by_product_weight",
                                   "frontier_weight", "prerequisites")} == {
        "temperature": 0.5, "uniform_mix": 0.2, "untried_weight": 0.3, "by_product_weight": 0.4,
        "frontier_weight": 0.6, "prerequisites": [[], [0], [0, 1]]}


def test_infinite_weights_are_refused_and_bad_ids_listed_five_at_most() -> None:
    for name in ("untried_weight", "by_product_weight"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0, got inf"):
            LearningProgressCurriculum(["a", "b"], **{name: float("inf")})
    with pytest.raises(ValueError, match=r"outside 0..1: \[2, 3, 4, 5, 6\]$"):
        LearningProgressCurriculum(["a", "b"], prerequisites=[[2, 3, 4], [5, 6, 7]])
