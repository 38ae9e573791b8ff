"""Collection into Parquet (no Ray: the collector function itself) and batch building with data sharing."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.config import config_from_dict
from orchestrator.offline.collection import collect_part
from orchestrator.offline.training import SharedBatches
from orchestrator.offline.config import BehaviourSource, OfflineConfig
from tasks.simon_says.transitions import TransitionBatch, read_transitions

TASKS = ["log", "planks", "stick"]


def _collect(tmp_path, policy: str, skill: float = 1.0, transitions: int = 300, tasks=None):
    source = BehaviourSource(policy=policy, skill=skill, tasks=tasks, transitions=transitions).model_dump()
    return collect_part(str(tmp_path), "w0", 3, TASKS, source, horizon=20, num_envs=4, transitions=transitions,
                        row_group_size=64, seed=0)


def test_scripted_collection_writes_whole_consistent_episodes(tmp_path) -> None:
    stats = _collect(tmp_path, "scripted", 1.0, tasks=["planks"])
    data, info = read_transitions(tmp_path)
    assert stats["rows"] == len(data) == 300 and set(stats["per_task"]) == {"planks"}
    assert (data.task == 1).all() and (data.obs[:, :3] == [0, 1, 0]).all()
    assert set(data.behaviour_policy) == {"scripted:1"} and (data.episode_id >> 32 == 3).all()
    # The scripted player (skill 1) gets planks well within the horizon (mine a log, then craft):
    # every finished episode ends with the reward, the termination and the planks on the same row,
    # after exactly one row that obtained the log.
    planks, log = info.item_names.index("planks"), info.item_names.index("log")
    order = np.lexsort((data.step, data.episode_id))
    d = data.take(order)
    done = d.terminated
    assert done.sum() >= 50 and (d.step[done] >= 1).all() and d.items_obtained[done, planks].all()
    assert np.array_equal(d.reward == 1, done) and not d.truncated.any()
    finished = np.isin(d.episode_id, d.episode_id[done])
    assert np.bincount(np.unique(d.episode_id[finished], return_inverse=True)[1], d.items_obtained[finished, log]).tolist() \
        == [1] * int(done.sum())
    # Within an episode, a transition's next observation is the next transition's observation
    # (the autoreset step, whose action is ignored, is never written).
    same = d.episode_id[1:] == d.episode_id[:-1]
    assert np.array_equal(d.next_obs[:-1][same], d.obs[1:][same])
    assert (d.step[1:][same] == d.step[:-1][same] + 1).all() and (d.step[1:][~same] == 0).all()


def test_random_collection_respects_the_source_tasks(tmp_path) -> None:
    stats = _collect(tmp_path, "random", tasks=["log", "stick"], transitions=200)
    data, _ = read_transitions(tmp_path)
    assert set(np.unique(data.task)) <= {0, 2} and len(data) == 200 and stats["episodes"] >= 1
    assert set(data.behaviour_policy) == {"random"}


def _toy_data() -> TransitionBatch:
    """Task 0: 4 rows, task 1: 2 rows; column 2 of obs is what the toy Q-function returns."""
    n = 6
    task = np.array([0, 1, 0, 1, 0, 0])
    obs = np.zeros((n, 3), dtype=np.float32)
    obs[np.arange(n), task] = 1
    obs[:, 2] = [1, 5, 2, 0, 3, 4]
    items = np.zeros((n, 2), dtype=bool)
    return TransitionBatch(task=task, obs=obs, action=np.zeros(n, dtype=np.int64), reward=np.zeros(n, np.float32),
                           next_obs=obs.copy(), terminated=np.zeros(n, bool), truncated=np.zeros(n, bool),
                           items_obtained=items, episode_id=np.arange(n), step=np.zeros(n, np.int64),
                           behaviour_policy=np.array(["random"] * n, dtype=object))


def _offline(sharing: str, percentile: float = 50.0) -> OfflineConfig:
    return OfflineConfig(dataset="unused", sharing=sharing, percentile=percentile, batch_size_per_task=400,
                         shared_per_task=400, cds_warmup_steps=0)


def _q_from_column(obs):
    """Toy Q(s, .): every action is worth column 2 of the observation."""
    return np.repeat(obs[:, 2:3].astype(np.float64), 2, axis=1)


def test_shared_batches_apply_the_cds_rule_with_the_current_q() -> None:
    # Percentile 100: the threshold is the largest own value kept (400 draws see every row).
    batches = SharedBatches(_toy_data(), np.array([0, 1]), 2, _offline("cds", 100), np.random.default_rng(0))
    batch, trains = batches.sample(_q_from_column)
    # Task 0's own values are {1, 2, 3, 4}: of task 1's rows (5 and 0) only the 5 passes.
    # Task 1's own values are {5, 0}: none of task 0's rows (at most 4) pass.
    shared_into_0 = batch.obs[trains == 0][400:, 2]
    assert set(shared_into_0) == {5.0} and (batch.obs[trains == 0][400:, 0] == 1).all()  # relabeled goal
    assert (trains == 1).sum() == 400
    m = batches.sharing_matrix()
    assert m[0, 1] == pytest.approx(0.5, abs=0.08) and m[1, 0] == 0.0
    assert batches.running.thresholds().tolist() == [4.0, 5.0]
    summary = batches.sharing_summary()
    # No toy candidate carries the target's reward; the mean Q of task 1's candidates into task 0 is ~2.5.
    assert summary["task 0"]["offered_rewarding"] == 0 and summary["task 0"]["q_other"] == pytest.approx(2.5, abs=0.3)


def test_shared_batches_threshold_runs_over_several_batches() -> None:
    # Window 2048 > 2 x 400: after one batch valued at column 2 and one valued 0 everywhere, the
    # 50th percentile is taken over all 800 own values of each task, not the last batch alone.
    batches = SharedBatches(_toy_data(), np.array([0, 1]), 2, _offline("cds", 50), np.random.default_rng(0))
    batches.sample(_q_from_column)
    first = batches.running.values[0, :400].copy()
    batches.sample(lambda obs: np.zeros((len(obs), 2)))
    kept = np.r_[first, np.zeros(400)]
    assert batches.running.thresholds()[0] == np.percentile(kept, 50)
    # cds_basic: the mean of the greedy value max_a Q(s, a) over the task's own states.
    basic = SharedBatches(_toy_data(), np.array([0, 1]), 2, _offline("cds_basic"), np.random.default_rng(0))
    basic.sample(lambda obs: np.c_[obs[:, 2], -obs[:, 2]].astype(np.float64))
    own0 = basic.running.values[0, :400]
    assert set(own0) <= {1.0, 2.0, 3.0, 4.0} and basic.running.thresholds()[0] == own0.mean()


def test_shared_batches_never_offer_rows_after_the_targets_item_was_obtained() -> None:
    # One episode of task 1 (item columns: task 0 -> 0, task 1 -> 1): step 0 obtains task 0's item,
    # steps 1-2 come after it. Only step 0 is a transition of task 0; relabeled it carries the reward.
    n = 4
    task = np.array([0, 1, 1, 1])
    obs = np.zeros((n, 3), np.float32)
    obs[np.arange(n), task] = 1
    items = np.zeros((n, 2), bool)
    items[1, 0] = True
    data = TransitionBatch(task=task, obs=obs, action=np.zeros(n, np.int64), reward=np.zeros(n, np.float32),
                           next_obs=obs.copy(), terminated=np.zeros(n, bool), truncated=np.zeros(n, bool),
                           items_obtained=items, episode_id=np.array([0, 9, 9, 9]), step=np.array([0, 0, 1, 2]),
                           behaviour_policy=np.array(["x"] * n, dtype=object))
    every = SharedBatches(data, np.array([0, 1]), 2, _offline("all"), np.random.default_rng(0))
    assert every.pool[0].tolist() == [1] and every.pool[1].tolist() == [0]
    batch, trains = every.sample(lambda obs: 1 / 0)
    assert batch.reward[trains == 0][400:].tolist() == [1.0] * 400
    assert every.sharing_summary()["task 0"]["accepted_rewarding"] == 1.0


def test_shared_batches_none_all_and_missing_own_data() -> None:
    none = SharedBatches(_toy_data(), np.array([0, 1]), 2, _offline("none"), np.random.default_rng(0))
    batch, trains = none.sample(lambda o: 1 / 0)  # Q is never needed
    assert len(batch) == 800 and np.isnan(none.sharing_matrix()[0, 1])
    every = SharedBatches(_toy_data(), np.array([0, 1]), 2, _offline("all"), np.random.default_rng(0))
    batch, trains = every.sample(lambda o: 1 / 0)
    assert len(batch) == 1600 and every.sharing_matrix()[1, 0] == 1.0
    data = _toy_data().take(np.array([0, 2, 4, 5]))  # only task 0 has data
    with pytest.raises(ValueError, match=r"no transitions for \['stick'\]"):
        SharedBatches(data, np.array([0, 1]), 2, _offline("cds"), np.random.default_rng(0), task_names=["log", "stick"])


def test_offline_config_refuses_bad_values() -> None:
    base = {"name": "x", "task": {"tasks": TASKS}, "offline": {"dataset": "d"}}
    from orchestrator.config import ConfigError

    with pytest.raises(ConfigError, match="offline.sharing"):
        config_from_dict(base | {"offline": {"dataset": "d", "sharing": "some"}}, "t.yaml")
    with pytest.raises(ConfigError, match="offline.behaviour.0: Value error, give `checkpoint` exactly when"):
        config_from_dict(base | {"offline": {"dataset": "d", "behaviour": [{"policy": "checkpoint"}]}}, "t.yaml")
    with pytest.raises(ConfigError, match="offline.percentile"):
        config_from_dict(base | {"offline": {"dataset": "d", "percentile": 120}}, "t.yaml")
    with pytest.raises(ConfigError, match=r"offline.value_range: Value error, value_range must be \[low, high\] with low < high"):
        config_from_dict(base | {"offline": {"dataset": "d", "value_range": [1.0, 0.0]}}, "t.yaml")
    with pytest.raises(ConfigError, match=r"offline.sharing: Input should be 'none', 'all', 'cds' or 'cds_basic'"):
        config_from_dict(base | {"offline": {"dataset": "d", "sharing": "cds-basic"}}, "t.yaml")


def test_checkpoint_behaviour_acts_greedily_with_its_q_network(tmp_path) -> None:
    from policies.cql import CQLConfig, DiscreteCQL
    from tasks.simon_says import SimonSaysVectorEnv

    env = SimonSaysVectorEnv(1, tasks=TASKS, horizon=20)
    agent = DiscreteCQL(env.single_observation_space.shape[0], int(env.single_action_space.n), CQLConfig(hidden=(8,)))
    path = agent.save(tmp_path / "q.pt")
    source = BehaviourSource(policy="checkpoint", checkpoint=str(path), skill=1.0, transitions=50).model_dump()
    collect_part(str(tmp_path / "d"), "w0", 0, TASKS, source, horizon=20, num_envs=2, transitions=50,
                 row_group_size=64, seed=0)
    data, _ = read_transitions(tmp_path / "d")
    assert len(data) == 50 and (data.action == agent.q_values(data.obs).argmax(1)).all()
    assert set(data.behaviour_policy) == {f"checkpoint:{path}:1"}
    wrong = DiscreteCQL(5, 3, CQLConfig(hidden=(8,))).save(tmp_path / "wrong.pt")
    source["checkpoint"] = str(wrong)
    with pytest.raises(ValueError, match="takes 5 observation columns and 3 actions"):
        collect_part(str(tmp_path / "e"), "w0", 0, TASKS, source, horizon=20, num_envs=2, transitions=5,
                     row_group_size=64, seed=0)
