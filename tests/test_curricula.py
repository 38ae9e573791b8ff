"""Known answers for the learning-progress maths, the bonus, validation and state round trips."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curricula import (
    CurriculumDistribution,
    EpisodeOutcomes,
    ExplorationBonus,
    LearningProgressCurriculum,
    SuccessEstimates,
    UniformCurriculum,
    build_curriculum,
    entropy,
    learning_progress_probabilities,
    normalise_against_random,
    reweight,
    sequential_ema,
)

TASKS = ["log", "planks", "stick", "crafting_table"]


def outcomes(task, success, evaluation=False, length=None, items=None) -> EpisodeOutcomes:
    task = np.asarray(task, dtype=np.int64)
    n = len(task)
    return EpisodeOutcomes(
        task=task,
        success=np.asarray(success, dtype=bool),
        episode_return=np.asarray(success, dtype=np.float64),
        length=np.full(n, 10, np.int64) if length is None else np.asarray(length, np.int64),
        items_obtained=items,
        evaluation=evaluation,
    )


# -- f(p), normalisation, EMAs, LP ------------------------------------------------------

def test_reweight_known_values():
    # f(p) = 0.9 p / (p + 0.1 (1 - 2p)) with theta = 0.1
    assert reweight(0.0) == 0.0
    assert reweight(1.0) == pytest.approx(1.0)
    assert reweight(0.1) == pytest.approx(0.09 / 0.18)  # 0.5
    assert reweight(0.25) == pytest.approx(0.75)
    assert reweight(0.5) == pytest.approx(0.9)
    # theta = 0.5 makes f the identity
    assert reweight(np.array([0.2, 0.7]), theta=0.5) == pytest.approx([0.2, 0.7])


def test_normalise_against_random_agent():
    assert normalise_against_random(0.6, 0.2) == pytest.approx(0.5)
    assert normalise_against_random(0.1, 0.2) == 0.0  # below random counts as 0
    assert normalise_against_random(1.0, 0.2) == pytest.approx(1.0)


def test_emas_and_lp_for_a_success_sequence():
    # Successes 0, 1, 1 on one task: both EMAs start at 0 (first measurement), then
    # fast: 0.1, 0.19;  slow (EMA of fast): 0.01, 0.1*0.19 + 0.9*0.01 = 0.028.
    cur = LearningProgressCurriculum(TASKS)
    cur.update(outcomes([0, 0, 0], [0, 1, 1]))
    est = cur.estimates
    assert est.p_fast[0] == pytest.approx(0.19)
    assert est.p_slow[0] == pytest.approx(0.028)
    # LP = |f(0.19) - f(0.028)| = |0.171/0.252 - 0.0252/0.1224|
    assert cur.learning_progress()[0] == pytest.approx(0.171 / 0.252 - 0.0252 / 0.1224)
    assert cur.learning_progress()[1:] == pytest.approx([0, 0, 0])
    assert est.measurements.tolist() == [3, 0, 0, 0]


def test_first_measurement_initialises_both_emas():
    cur = LearningProgressCurriculum(TASKS)
    cur.update(outcomes([2], [1]))
    assert cur.estimates.p_fast[2] == 1.0 and cur.estimates.p_slow[2] == 1.0
    assert cur.learning_progress()[2] == 0.0


def test_signed_lp_is_negative_when_forgetting():
    cur = LearningProgressCurriculum(TASKS, signed=True)
    cur.update(outcomes([0, 0, 0], [1, 0, 0]))
    # fast: 1, 0.9, 0.81; slow: 1, 0.99, 0.972
    assert cur.estimates.p_fast[0] == pytest.approx(0.81)
    assert cur.estimates.p_slow[0] == pytest.approx(0.972)
    assert cur.learning_progress()[0] == pytest.approx(reweight(0.81) - reweight(0.972))
    assert cur.learning_progress()[0] < 0
    absolute = LearningProgressCurriculum(TASKS)
    absolute.update(outcomes([0, 0, 0], [1, 0, 0]))
    assert absolute.learning_progress()[0] == pytest.approx(-cur.learning_progress()[0])


def test_alpha_one_tracks_the_last_measurement():
    cur = LearningProgressCurriculum(TASKS, alpha_fast=1.0, alpha_slow=1.0)
    cur.update(outcomes([1, 1, 1], [1, 1, 0]))
    assert cur.estimates.p_fast[1] == 0.0 and cur.estimates.p_slow[1] == 0.0


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=60),
    alpha_fast=st.sampled_from([0.1, 0.3, 1.0, 0.1000001, 0.05]),
    alpha_slow=st.sampled_from([0.1, 0.2, 1.0, 0.01]),
    split=st.integers(0, 60),
)
def test_vectorised_emas_equal_the_sequential_loop(data, alpha_fast, alpha_slow, split):
    tasks = np.array([t for t, _ in data])
    wins = np.array([s for _, s in data])
    est = SuccessEstimates(4, alpha_fast, alpha_slow)
    # Any split into batches gives the same result as one pass.
    est.absorb(tasks[:split], wins[:split].astype(float))
    est.absorb(tasks[split:], wins[split:].astype(float))
    for t in range(4):
        values = wins[tasks == t].astype(float)
        if len(values) == 0:
            assert est.measurements[t] == 0
            continue
        fast, slow = sequential_ema(values, alpha_fast, alpha_slow)
        assert est.p_fast[t] == pytest.approx(fast, abs=1e-12)
        assert est.p_slow[t] == pytest.approx(slow, abs=1e-12)
        assert est.success_rate[t] == pytest.approx(sequential_ema(values, alpha_fast, alpha_fast)[0], abs=1e-12)


def test_long_runs_do_not_overflow():
    est = SuccessEstimates(2, 0.1, 0.05)
    est.absorb(np.zeros(20000, np.int64), np.ones(20000))
    assert est.p_fast[0] == pytest.approx(1.0) and est.p_slow[0] == pytest.approx(1.0)
    values = np.r_[np.zeros(10000), np.ones(10000)]
    est2 = SuccessEstimates(1, 0.1, 0.05)
    est2.absorb(np.zeros(20000, np.int64), values)
    assert est2.p_fast[0] == pytest.approx(sequential_ema(values, 0.1, 0.05)[0])
    assert est2.p_slow[0] == pytest.approx(sequential_ema(values, 0.1, 0.05)[1])


# -- the distribution for fixed LP vectors ---------------------------------------------

def test_distribution_zscore_sigmoid_normalise():
    lp = np.array([0.1, 0.3, 0.0, 0.0])
    success = np.array([0.0, 0.0, 0.0, 0.5])
    measured = np.ones(4, bool)
    # Pool: tasks 0, 1 (LP > 0) and 3 (success > 0); task 2 gets nothing.
    # z of [0.1, 0.3, 0] = [-0.26726, 1.33631, -1.06904]; sigmoid; normalise.
    p = learning_progress_probabilities(lp, success, measured)
    assert p == pytest.approx([0.2927522, 0.5346774, 0.0, 0.1725704], abs=1e-7)
    # temperature 0.5 sharpens: sigmoid(2 z)
    p = learning_progress_probabilities(lp, success, measured, temperature=0.5)
    assert p == pytest.approx([0.2619740, 0.6632553, 0.0, 0.0747707], abs=1e-7)
    # 20 % uniform mix
    p = learning_progress_probabilities(lp, success, measured, uniform_mix=0.2)
    assert p == pytest.approx(0.8 * np.array([0.2927522, 0.5346774, 0.0, 0.1725704]) + 0.05, abs=1e-7)


def test_distribution_when_no_task_qualifies_is_uniform_over_measured():
    zeros = np.zeros(4)
    assert learning_progress_probabilities(zeros, zeros, np.ones(4, bool)) == pytest.approx([0.25] * 4)
    # Equal LP: the standard deviation 0 counts as 1, so all get the same weight.
    p = learning_progress_probabilities(np.array([0.2, 0.2, 0, 0]), zeros, np.ones(4, bool))
    assert p == pytest.approx([0.5, 0.5, 0, 0])


def test_never_tried_tasks_keep_their_uniform_share():
    lp = np.array([0.1, 0.3, 0.0, 0.0])
    measured = np.array([True, True, False, False])
    p = learning_progress_probabilities(lp, np.zeros(4), measured)
    # Untried tasks 2, 3: 1/4 each. Measured share 0.5 split by sigmoid(-1), sigmoid(1).
    assert p == pytest.approx([0.1344707, 0.3655293, 0.25, 0.25], abs=1e-7)
    p = learning_progress_probabilities(lp, np.zeros(4), measured, untried_weight=0.0)
    assert p[2:] == pytest.approx([0, 0])
    assert p.sum() == pytest.approx(1.0)
    # Nothing measured: uniform.
    assert learning_progress_probabilities(lp, np.zeros(4), np.zeros(4, bool)) == pytest.approx([0.25] * 4)


def test_scheduler_publishes_lp_distribution_and_bumps_version_only_on_change():
    cur = LearningProgressCurriculum(TASKS, uniform_mix=0.0)
    first = cur.distribution()
    assert first.version == 0 and first.probabilities == pytest.approx([0.25] * 4)
    assert cur.distribution() is first  # nothing changed, nothing recomputed
    cur.update(outcomes([0, 0, 0, 1, 2, 3], [0, 1, 1, 0, 0, 0]))
    second = cur.distribution()
    assert second.version == 1
    # Task 0 is the only one with LP > 0 (tasks 1-3: one failure each), so it gets everything.
    assert second.probabilities == pytest.approx([1, 0, 0, 0])
    cur.update(outcomes([1], [0]))  # task 1 stays at 0: no change in probabilities
    assert cur.distribution().version == 1
    assert entropy(second.probabilities) == 0.0
    assert entropy(np.full(4, 0.25)) == pytest.approx(np.log(4))


def test_uniform_curriculum_stays_uniform_but_reports_lp():
    cur = UniformCurriculum(TASKS)
    cur.update(outcomes([0, 0, 0], [0, 1, 1]))
    assert cur.distribution().probabilities == pytest.approx([0.25] * 4)
    m = cur.metrics()
    assert m["p_fast/log"] == pytest.approx(0.19)
    assert m["learning_progress/log"] > 0
    assert m["episodes/log"] == 3.0 and m["num_active_tasks"] == 4.0
    assert m["entropy"] == pytest.approx(np.log(4))


def test_metrics_keys():
    cur = LearningProgressCurriculum(TASKS, bonus="static")
    m = cur.metrics()
    for prefix in ("success_rate", "p_fast", "p_slow", "learning_progress", "probability", "episodes"):
        for task in TASKS:
            assert isinstance(m[f"{prefix}/{task}"], float)
    assert m["num_bonus_items"] == 4.0
    assert {"entropy", "num_active_tasks", "num_bonus_items"} <= set(m)


# -- evaluation-interval measurement and the random baseline ---------------------------

def test_evaluation_source_measures_only_evaluation_batches():
    cur = LearningProgressCurriculum(TASKS, success_source="evaluation", evaluation_interval_steps=100,
                                     random_baseline="first_measurement")
    assert cur.evaluation_due  # before the first evaluation
    # First round: the random agent's rates become the baselines (0.25 for task 0, capped at 0.75 for task 1).
    cur.update(outcomes([0, 0, 0, 0, 1, 1], [1, 0, 0, 0, 1, 1], evaluation=True))
    assert cur.estimates.baseline[:2] == pytest.approx([0.25, 0.75])
    assert cur.estimates.p_fast[:2] == pytest.approx([0.0, 0.25 / 0.25])
    assert not cur.evaluation_due
    cur.update(outcomes([0] * 5, [1] * 5, length=[19] * 5))  # training: 95 steps, no measurement
    assert cur.estimates.measurements[0] == 1 and not cur.evaluation_due
    cur.update(outcomes([2], [0], length=[5]))
    assert cur.evaluation_due
    # Second round: task 0 succeeds 3/4 -> normalised (0.75 - 0.25) / 0.75 = 2/3; fast EMA 0.1 * 2/3.
    cur.update(outcomes([0, 0, 0, 0], [1, 1, 1, 0], evaluation=True))
    assert cur.estimates.p_fast[0] == pytest.approx(0.1 * 2 / 3)
    assert cur.estimates.success_rate[0] == pytest.approx(0.9 * 0.25 + 0.1 * 0.75)
    assert cur.episodes[0] == 5 and cur.evaluation_episodes[0] == 8
    assert not cur.evaluation_due


def test_online_source_ignores_evaluation_batches_for_estimates():
    cur = LearningProgressCurriculum(TASKS)
    cur.update(outcomes([0, 0], [1, 1], evaluation=True))
    assert cur.estimates.measurements[0] == 0 and cur.evaluation_episodes[0] == 2


def test_fixed_random_baseline_normalises_online_measurements():
    cur = LearningProgressCurriculum(TASKS, random_baseline=0.5)
    cur.update(outcomes([0, 0], [1, 1]))
    assert cur.estimates.p_fast[0] == 1.0  # (1 - 0.5) / 0.5
    cur.update(outcomes([1], [0]))
    assert cur.estimates.p_fast[1] == 0.0


# -- exploration bonus -----------------------------------------------------------------

def test_dynamic_bonus_drops_items_once_reliable():
    items = TASKS + ["dirt"]  # "dirt" is an item but not a task: with non_task_items=always it always pays
    cur = LearningProgressCurriculum(TASKS, items, bonus={"mode": "dynamic", "threshold": 0.5, "size": 0.2,
                                                          "items": "all", "non_task_items": "always"},
                                     alpha_fast=1.0)
    assert cur.distribution().bonus_items.tolist() == [True] * 5
    cur.update(outcomes([0, 1], [1, 0]))  # success rate (alpha 1): log 1.0, planks 0.0
    d = cur.distribution()
    assert d.bonus_items.tolist() == [False, True, True, True, True]
    assert cur.metrics()["num_bonus_items"] == 4.0


def test_static_and_off_bonus():
    assert LearningProgressCurriculum(TASKS, bonus="static").distribution().bonus_items.all()
    assert not LearningProgressCurriculum(TASKS, bonus=None).distribution().bonus_items.any()
    assert not LearningProgressCurriculum(TASKS, bonus="off").distribution().bonus_items.any()
    with pytest.raises(ValueError, match="mode must be one of"):
        ExplorationBonus(mode="sometimes")
    with pytest.raises(ValueError, match="threshold"):
        ExplorationBonus(threshold=1.5)


def test_bonus_set_change_bumps_version():
    cur = UniformCurriculum(TASKS, bonus={"mode": "dynamic", "threshold": 0.5}, alpha_fast=1.0)
    cur.update(outcomes([0], [1]))
    assert cur.distribution().version == 1


# -- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "batch, message",
    [
        (outcomes([0, 4], [1, 0]), r"task\[1\] = 4 is not a task id; valid ids are 0..3"),
        (outcomes([-1], [1]), r"task\[0\] = -1"),
        (EpisodeOutcomes([0, 1], [True, False], [1.0, np.nan], [3, 3]), r"episode_return\[1\] = nan is not finite"),
        (EpisodeOutcomes([0], [True], [np.inf], [3]), r"episode_return\[0\] = inf"),
        (EpisodeOutcomes([0, 1], [True], [1.0, 0.0], [3, 3]), r"success has shape \(1,\); expected \(2,\)"),
        (EpisodeOutcomes([0.5], [True], [1.0], [3]), r"task must hold integer task ids"),
        (EpisodeOutcomes([0], [True], [1.0], [-3]), r"length\[0\] = -3 is negative"),
        (outcomes([0], [1], items=np.zeros((1, 3), bool)), r"items_obtained has shape \(1, 3\); expected \(1, 4\)"),
    ],
)
def test_rejected_batches_change_nothing(batch, message):
    cur = LearningProgressCurriculum(TASKS)
    cur.update(outcomes([0, 1, 0], [1, 0, 0]))
    before = pickle.dumps(cur.state_dict())
    with pytest.raises(ValueError, match=message):
        cur.update(batch)
    assert pickle.dumps(cur.state_dict()) == before


@pytest.mark.parametrize("name", ["alpha_fast", "alpha_slow"])
@pytest.mark.parametrize("value", [0.0, -0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval_is_rejected(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be in \(0, 1\]"):
        build_curriculum("learning_progress", TASKS, **{name: value})


def test_bad_config_messages_name_the_field_and_choices():
    with pytest.raises(ValueError, match=r"valid kinds: \['learning_progress', 'uniform'\]"):
        build_curriculum("lp", TASKS)
    with pytest.raises(ValueError, match=r"unknown uniform curriculum setting\(s\) \['temperature'\]"):
        build_curriculum("uniform", TASKS, temperature=2.0)
    with pytest.raises(ValueError, match="success_source must be one of"):
        build_curriculum("uniform", TASKS, success_source="oracle")
    with pytest.raises(ValueError, match="evaluation_interval_steps"):
        build_curriculum("uniform", TASKS, success_source="evaluation")
    with pytest.raises(ValueError, match="first_measurement"):
        build_curriculum("uniform", TASKS, random_baseline="first_measurement")
    with pytest.raises(ValueError, match="theta"):
        build_curriculum("uniform", TASKS, theta=0.0)
    with pytest.raises(ValueError, match="temperature"):
        build_curriculum("learning_progress", TASKS, temperature=0)
    with pytest.raises(ValueError, match="uniform_mix"):
        build_curriculum("learning_progress", TASKS, uniform_mix=1.5)
    with pytest.raises(ValueError, match="duplicates"):
        build_curriculum("uniform", ["a", "a"])


# -- state round trips -----------------------------------------------------------------

def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    kwargs = dict(bonus={"mode": "dynamic", "threshold": 0.3}, uniform_mix=0.1)
    a = build_curriculum("learning_progress", TASKS, **kwargs)
    first = outcomes(rng.integers(0, 4, 200), rng.random(200) < 0.4, items=rng.random((200, 4)) < 0.3)
    a.update(first)
    a.distribution()
    b = build_curriculum("learning_progress", TASKS, **kwargs)
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    assert b.distribution() == a.distribution()
    assert b.metrics() == a.metrics()
    more = outcomes(rng.integers(0, 4, 50), rng.random(50) < 0.6)
    a.update(more)
    b.update(more)
    assert b.metrics() == a.metrics()
    assert np.array_equal(b.distribution().bonus_items, a.distribution().bonus_items)


def test_load_state_dict_rejects_other_tasks():
    a = UniformCurriculum(TASKS)
    b = UniformCurriculum(TASKS[:3] + ["furnace"])
    with pytest.raises(ValueError, match=r"task_names do not match.*missing \['furnace'\]"):
        b.load_state_dict(a.state_dict())


def test_distribution_arrays_are_read_only():
    d = UniformCurriculum(TASKS).distribution()
    with pytest.raises(ValueError):
        d.probabilities[0] = 1.0
    assert isinstance(d, CurriculumDistribution)


def test_concat_and_empty():
    a = outcomes([0], [1])
    b = outcomes([1, 2], [0, 1])
    joined = EpisodeOutcomes.concat([a, b])
    assert joined.task.tolist() == [0, 1, 2] and len(joined) == 3
    assert len(EpisodeOutcomes.empty(num_items=3)) == 0
    with pytest.raises(ValueError, match="cannot mix evaluation"):
        EpisodeOutcomes.concat([a, outcomes([0], [1], evaluation=True)])
    cur = UniformCurriculum(TASKS)
    cur.update(EpisodeOutcomes.empty())
    assert cur.episodes.sum() == 0


def test_config_rebuilds_the_same_scheduler():
    a = build_curriculum("learning_progress", TASKS, TASKS + ["dirt"], temperature=0.5, uniform_mix=0.2,
                         bonus={"mode": "dynamic", "threshold": 0.3}, random_baseline=[0.1, 0.0, 0.0, 0.2])
    config = a.config()
    assert config["kind"] == "learning_progress" and config["temperature"] == 0.5
    assert config["bonus"] == {"mode": "dynamic", "size": 0.1, "threshold": 0.3, "items": "tasks",
                               "non_task_items": "until_obtained_reliably"}
    params = {k: v for k, v in config.items() if k not in ("kind", "task_names", "item_names")}
    b = build_curriculum(config["kind"], config["task_names"], config["item_names"], **params)
    batch = outcomes([0, 0, 1, 3, 3], [0, 1, 1, 1, 0])
    a.update(batch)
    b.update(batch)
    assert a.metrics() == b.metrics()
    assert not UniformCurriculum(TASKS).has_state and a.has_state


@settings(max_examples=200, deadline=None)
@given(
    lp=st.lists(st.floats(0, 1), min_size=1, max_size=30),
    data=st.data(),
    temperature=st.floats(0.05, 5),
    mix=st.floats(0, 1),
)
def test_distribution_is_a_distribution(lp, data, temperature, mix):
    n = len(lp)
    success = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.3]), min_size=n, max_size=n)))
    measured = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    lp = np.array(lp) * measured  # unmeasured tasks have no LP
    p = learning_progress_probabilities(lp, success * measured, measured, temperature=temperature, uniform_mix=mix)
    assert p.shape == (n,) and np.all(p >= 0) and p.sum() == pytest.approx(1.0)
    pool = measured & ((lp > 0) | (success > 0))
    if pool.any() and mix == 0:
        # measured tasks outside the pool get nothing
        assert np.all(p[measured & ~pool] == 0)
