"""benchmarks/scaling.py's plan and arithmetic (the runs themselves are the benchmark): which points a
machine gets, in which order, and the efficiency against linear."""

from __future__ import annotations

import pytest

from benchmarks.scaling import add_efficiency, overrides_for, plan, runner_counts


def test_runner_counts_fill_the_cpus_left_by_learner_actors():
    assert runner_counts(2, 0) == [0, 1, 2]
    assert runner_counts(16, 0) == [0, 1, 2, 4, 8, 16]
    assert runner_counts(16, 2) == [0, 1, 2, 4, 8, 14]  # the largest that fits is measured too
    assert runner_counts(2, 2) == [0]


def test_a_two_core_machine_without_cuda_gets_every_point_and_no_gpu_row():
    points = plan(["quickstart", "mt10_sac"], cpus=2, gpus=0)
    assert [(p["config"], p["runners"], p["label"]) for p in points] == [
        ("quickstart", 0, "1 (driver)"), ("quickstart", 1, "1 (driver)"), ("quickstart", 2, "1 (driver)"),
        ("mt10_sac", 0, "1 (driver)"), ("mt10_sac", 1, "1 (driver)"), ("mt10_sac", 2, "1 (driver)"),
        ("quickstart", 0, "2 actors"), ("mt10_sac", 0, "2 actors")]


def test_gpu_learner_rows_come_before_the_cpu_learner_actors():
    points = plan(["quickstart"], cpus=16, gpus=1)
    labels = [p["label"] for p in points]
    assert labels.index("1 GPU") < labels.index("2 actors")
    gpu = [p for p in points if p["gpus"]]
    assert {p["runners"] for p in gpu} == {0, 1, 2, 4, 8, 15}
    assert "rl.num_gpus_per_learner=1" in overrides_for(gpu[0], 4)


def test_overrides_turn_overlap_off_without_an_env_runner():
    point = plan(["quickstart"], cpus=2, gpus=0)[0]
    assert "rl.overlap_sampling=false" in overrides_for(point, 3) and "rl.num_env_runners=0" in overrides_for(point, 3)
    assert "training.iterations=3" in overrides_for(point, 3)
    with_runner = plan(["mt10_sac"], cpus=2, gpus=0)[1]
    assert with_runner["runners"] == 1 and not any(o.startswith("rl.overlap_sampling") for o in overrides_for(with_runner, 3))


def test_efficiency_against_linear_known_answer():
    rows = [{"config": "c", "label": "l", "runners": n, "status": "ok", "env_steps_per_second": rate}
            for n, rate in ((0, 500.0), (1, 1000.0), (2, 1500.0), (4, 4000.0))]
    rows.append({"config": "c", "label": "l", "runners": 8, "status": "failed"})
    add_efficiency(rows)
    assert [r.get("efficiency_vs_linear") for r in rows] == [None, 1.0, 0.75, 1.0, None]
    assert rows[2]["speedup_vs_1_runner"] == pytest.approx(1.5)


@pytest.mark.parametrize("cpus,gpus", [(2, 0), (16, 1)])
def test_every_planned_point_is_a_config_that_loads(cpus, gpus):
    """A point whose overrides the config refuses would only fail minutes into the benchmark."""
    from benchmarks.scaling import CONFIGS
    from orchestrator.config import load_config

    for point in plan(sorted(CONFIGS), cpus=cpus, gpus=gpus):
        cfg = load_config(CONFIGS[point["config"]]["file"], overrides_for(point, 4))
        assert cfg.rl.num_env_runners == point["runners"] and cfg.training.iterations == 4
