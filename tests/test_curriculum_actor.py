"""The CurriculumActor on a real local Ray: reports, versioned pulls, rejection, checkpoint and restart."""

from __future__ import annotations

import pickle
import time
import uuid

import numpy as np
import pytest

from curricula import EpisodeOutcomes, LearningProgressCurriculum
from test_curriculum_wrapper import ITEMS, TASKS, ChainVectorEnv, chain_policy

ray = pytest.importorskip("ray")

from orchestrator.rl.curriculum_actor import (  # noqa: E402
    VERSION_GAP_AFTER_RESTORE,
    ActorCurriculumClient,
    CurriculumActor,
    RunnerSequences,
    start_curriculum_actor,
)
from orchestrator.rl.curriculum_wrapper import CurriculumVectorWrapper  # noqa: E402


def batch(task, success, evaluation=False) -> EpisodeOutcomes:
    task = np.asarray(task, np.int64)
    return EpisodeOutcomes(task, np.asarray(success, bool), np.asarray(success, float), np.full(len(task), 5), None, evaluation)


def settings(**extra):
    return {"kind": "learning_progress", "task_names": list(TASKS), "item_names": list(ITEMS), **extra}


@pytest.fixture
def actor(ray_session, request):
    handle = start_curriculum_actor(settings(bonus="dynamic"), name=f"curriculum-{uuid.uuid4().hex[:8]}")
    yield handle
    ray.kill(handle, no_restart=True)


def test_reports_are_absorbed_and_distribution_is_versioned(actor):
    client = ActorCurriculumClient(actor)
    first = client.fetch(-1)
    assert first.version == 0 and first.probabilities == pytest.approx([1 / 3] * 3)
    assert ray.get(actor.distribution.remote(0)) is None  # unchanged: nothing sent back
    client.report(batch([0, 0, 0, 1], [0, 1, 1, 0]))
    client.report(batch([2], [1]))
    client.flush()
    metrics = ray.get(actor.metrics.remote())
    assert metrics["episodes/log"] == 3.0 and metrics["episodes/stick"] == 1.0
    assert metrics["p_fast/log"] == pytest.approx(0.19)
    assert metrics["actor/reports"] == 2.0
    # poll never blocks: the first call only sends a request, a later one returns the answer.
    assert client.poll(0) is None
    deadline = time.monotonic() + 10
    newer = None
    while newer is None and time.monotonic() < deadline:
        newer = client.poll(0)
        time.sleep(0.01)
    assert newer is not None and newer.version >= 1
    assert newer.probabilities.sum() == pytest.approx(1.0)


def test_rejected_batch_surfaces_in_the_client_and_changes_nothing(actor):
    client = ActorCurriculumClient(actor)
    client.report(batch([0, 1], [1, 0]))
    client.flush()
    before = ray.get(actor.state_dict.remote())
    client.report(batch([0, 7], [1, 0]))
    with pytest.raises(ValueError, match=r"task\[1\] = 7 is not a task id"):
        client.flush()
    after = ray.get(actor.state_dict.remote())
    assert pickle.dumps(after) == pickle.dumps(before)
    assert ray.get(actor.metrics.remote())["actor/rejected_reports"] == 1.0


def test_backlog_beyond_in_flight_limit_is_sent_joined(actor):
    client = ActorCurriculumClient(actor, max_in_flight_reports=1)
    for _ in range(20):
        client.report(batch([1, 2], [1, 1]))
    client.flush()
    assert ray.get(actor.metrics.remote())["episodes_total"] == 40.0


def test_client_is_found_by_name_and_pickles(ray_session):
    name, namespace = f"curriculum-{uuid.uuid4().hex[:8]}", "mto-test"
    handle = start_curriculum_actor(settings(), name=name, namespace=namespace)
    try:
        client = pickle.loads(pickle.dumps(ActorCurriculumClient.from_name(name, namespace=namespace)))
        client.report(batch([0], [1]))
        client.flush()
        assert ray.get(handle.metrics.remote())["episodes/log"] == 1.0
    finally:
        ray.kill(handle, no_restart=True)


def test_killed_actor_restarts_from_its_checkpoint(ray_session, tmp_path):
    path = tmp_path / "curriculum.pkl"
    handle = start_curriculum_actor(
        settings(), name=f"curriculum-{uuid.uuid4().hex[:8]}", checkpoint_path=str(path),
        checkpoint_every_reports=2, checkpoint_every_seconds=3600, max_restarts=2,
    )
    try:
        client = ActorCurriculumClient(handle)
        for _ in range(4):
            client.report(batch([0, 0, 1], [1, 0, 1]))
        client.flush()
        assert path.exists()  # saved on its own after every 2nd report
        before = ray.get(handle.metrics.remote())
        version_before = ray.get(handle.distribution.remote(-1)).version
        ray.kill(handle, no_restart=False)
        # ray.kill is asynchronous: calls are retried across the restart (max_task_retries=-1);
        # wait until the answer comes from the restarted process.
        deadline = time.monotonic() + 60
        after = ray.get(handle.metrics.remote(), timeout=60)
        while after["actor/restored"] == 0.0 and time.monotonic() < deadline:
            time.sleep(0.2)
            after = ray.get(handle.metrics.remote(), timeout=60)
        assert after["actor/restored"] == 1.0
        for key in ("episodes/log", "episodes/planks", "p_fast/log", "p_slow/log", "success_rate/planks"):
            assert after[key] == before[key]
        assert ray.get(handle.distribution.remote(-1)).version == version_before + VERSION_GAP_AFTER_RESTORE
        client.report(batch([2], [1]))  # and it keeps working
        client.flush()
        assert ray.get(handle.metrics.remote())["episodes/stick"] == 1.0
    finally:
        ray.kill(handle, no_restart=True)


def test_save_checkpoint_to_a_path_and_restore_in_process(tmp_path):
    actor = CurriculumActor(settings(), checkpoint_path=None)
    actor.report(batch([0, 0, 0], [0, 1, 1]))
    written = actor.save_checkpoint(str(tmp_path / "sub" / "c.pkl"))
    restored = CurriculumActor(settings(), checkpoint_path=written)
    assert restored.restored_from == written
    assert restored.metrics()["p_fast/log"] == pytest.approx(0.19)
    with pytest.raises(ValueError, match="no path given"):
        actor.save_checkpoint()
    with pytest.raises(ValueError, match="need 'kind'"):
        CurriculumActor({"task_names": ["a"]})


@pytest.mark.parametrize("wait", [True, False], ids=["reproducible", "never-waits"])
def test_vector_wrapper_with_the_actor_end_to_end(actor, wait):
    client = ActorCurriculumClient(actor)
    env = CurriculumVectorWrapper(ChainVectorEnv(8), client, bonus_size=0.1, report_every_episodes=8,
                                  refresh_every_episodes=8, refresh_every_seconds=0.01, wait_for_curriculum=wait)
    obs, _ = env.reset(seed=0)
    episodes = 0
    deadline = time.monotonic() + 120  # without waiting, answers arrive when a loaded machine lets them
    steps = 0
    while steps < 200 or (env.link.refreshes < 2 and time.monotonic() < deadline):
        obs, reward, term, trunc, info = env.step(chain_policy(obs))
        episodes += int((term | trunc).sum())
        steps += 1
        if steps >= 200:
            time.sleep(0.01)
    env.flush()
    metrics = ray.get(actor.metrics.remote())
    assert metrics["episodes_total"] == episodes
    assert env.link.refreshes >= 2  # the local copy followed the actor's versions
    # The chain policy masters every task, so the dynamic bonus set has dropped them.
    # wooden_pickaxe is an item but not a task: with the default items=tasks it never pays.
    assert metrics["num_bonus_items"] == 0.0 and metrics["bonus/paying_items"] == 0.0
    # The bonus paid early on reached the actor beside the env return, and shows as a share.
    assert 0.0 < metrics["bonus/share_of_return"] < 1.0
    env.close()


def test_a_scheduler_object_with_state_starts_the_actor_from_that_state(ray_session):
    scheduler = LearningProgressCurriculum(TASKS, ITEMS, bonus="dynamic")
    scheduler.update(batch([0, 0, 0], [0, 1, 1]))
    handle = start_curriculum_actor(scheduler, name=f"curriculum-{uuid.uuid4().hex[:8]}")
    try:
        metrics = ray.get(handle.metrics.remote())
        assert metrics["p_fast/log"] == pytest.approx(0.19) and metrics["episodes/log"] == 3.0
        assert metrics["num_bonus_items"] == scheduler.metrics()["num_bonus_items"]
    finally:
        ray.kill(handle, no_restart=True)


# --- idempotent outcome batches (issue 25) ---------------------------------------------

def test_runner_sequences_absorb_each_number_once_in_any_order():
    seqs = RunnerSequences()
    for n in (1, 2, 4, 5):
        assert not seqs.seen("a", n)
        seqs.add("a", n)
    assert seqs.watermark == {"a": 2} and seqs.above == {"a": {4, 5}}
    assert seqs.seen("a", 1) and seqs.seen("a", 4) and not seqs.seen("a", 3) and not seqs.seen("b", 1)
    seqs.add("a", 3)  # the gap closes: the watermark moves past everything seen
    assert seqs.watermark == {"a": 5} and seqs.above == {}
    copy = RunnerSequences()
    copy.load_state_dict(pickle.loads(pickle.dumps(seqs.state_dict())))
    assert copy.watermark == seqs.watermark and copy.seen("a", 5) and not copy.seen("a", 6)


def test_a_numbered_batch_is_counted_once_and_its_number_survives_a_checkpoint(tmp_path):
    actor = CurriculumActor(settings(), checkpoint_path=str(tmp_path / "c.pkl"), checkpoint_every_reports=1)
    assert actor.report(batch([0, 1], [1, 0]), "runner-a", 1) == 2
    assert actor.report(batch([0, 1], [1, 0]), "runner-a", 1) == 2  # acknowledged...
    assert actor.metrics()["episodes_total"] == 2.0  # ...not counted
    assert actor.metrics()["actor/duplicate_reports"] == 1.0
    actor.report(batch([2], [1]), "runner-b", 1)  # another runner's number 1 is its own
    with pytest.raises(ValueError, match="start at 1"):
        actor.report(batch([2], [1]), "runner-b", 0)
    restored = CurriculumActor(settings(), checkpoint_path=str(tmp_path / "c.pkl"))
    assert restored.restored_from is not None
    restored.report(batch([0], [1]), "runner-a", 1)
    restored.report(batch([0], [1]), "runner-b", 1)
    assert restored.metrics()["episodes_total"] == 3.0 and restored.metrics()["actor/duplicate_reports"] == 2.0
    restored.report(batch([0], [1]), "runner-a", 2)
    assert restored.metrics()["episodes_total"] == 4.0
    # Unnumbered reports (older callers, the driver's own) are absorbed every time, as before.
    restored.report(batch([0], [1]))
    restored.report(batch([0], [1]))
    assert restored.metrics()["episodes_total"] == 6.0


def test_a_checkpoint_written_before_numbering_still_loads(tmp_path):
    actor = CurriculumActor(settings())
    actor.report(batch([0, 0, 0], [0, 1, 1]))
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"format": 1, "kind": "learning_progress", "state": actor.state_dict()}))
    restored = CurriculumActor(settings(), checkpoint_path=str(path))
    assert restored.metrics()["p_fast/log"] == pytest.approx(0.19) and restored.sequences.watermark == {}


def _crashing_actor(tmp_path, every_reports: int):
    marker = tmp_path / "crashed"
    handle = start_curriculum_actor(
        settings(), name=f"curriculum-{uuid.uuid4().hex[:8]}", checkpoint_path=str(tmp_path / "curriculum.pkl"),
        checkpoint_every_reports=every_reports, checkpoint_every_seconds=3600, max_restarts=2,
        crash_once_after_report=str(marker),
    )
    return handle, marker


@pytest.mark.parametrize("every_reports,duplicates", [(1, 1.0), (1000, 0.0)], ids=["saved-then-killed", "killed-before-save"])
def test_actor_killed_between_absorbing_and_answering_counts_each_batch_once(ray_session, tmp_path, every_reports, duplicates):
    """The first report is absorbed (and, with every_reports=1, saved with its number); the
    process then dies before answering and Ray retries the call on the restarted actor."""
    handle, marker = _crashing_actor(tmp_path, every_reports)
    try:
        client = ActorCurriculumClient(handle)
        client.report(batch([0, 0, 1], [1, 0, 1]))
        client.flush(timeout_s=120)  # waits through the crash, the restart and the retry
        client.report(batch([2, 2], [1, 1]))
        client.flush(timeout_s=60)
        assert marker.exists()  # the crash really happened
        metrics = ray.get(handle.metrics.remote(), timeout=60)
        assert metrics["episodes_total"] == 5.0
        assert metrics["episodes/log"] == 2.0 and metrics["episodes/planks"] == 1.0 and metrics["episodes/stick"] == 2.0
        assert metrics["actor/duplicate_reports"] == duplicates
        assert metrics["actor/restored"] == float(every_reports == 1)  # restored only when a file was saved
    finally:
        ray.kill(handle, no_restart=True)


def test_without_numbers_the_retried_batch_counts_twice(ray_session, tmp_path):
    """The control: what the numbering prevents. An unnumbered batch saved and then not answered
    is absorbed again by Ray's retry."""
    handle, marker = _crashing_actor(tmp_path, 1)
    try:
        ray.get(handle.report.remote(batch([0, 0, 1], [1, 0, 1])), timeout=120)
        assert marker.exists()
        assert ray.get(handle.metrics.remote(), timeout=60)["episodes_total"] == 6.0
    finally:
        ray.kill(handle, no_restart=True)


def test_publish_cadence_holds_the_version_until_the_interval_passes():
    actor = CurriculumActor(settings(), publish_every_seconds=0.3)
    first = actor.distribution(-1)
    actor.report(batch([0, 0, 0], [0, 1, 1]))
    assert actor.distribution(first.version) is None  # new outcomes, but within the interval
    time.sleep(0.35)
    newer = actor.distribution(first.version)
    assert newer is not None and newer.version == first.version + 1
    every_time = CurriculumActor(settings())  # the default: every request after new outcomes
    v0 = every_time.distribution(-1).version
    every_time.report(batch([0, 0, 0], [0, 1, 1]))
    assert every_time.distribution(v0).version == v0 + 1
    with pytest.raises(ValueError, match="publish_every_seconds"):
        CurriculumActor(settings(), publish_every_seconds=-1)


def test_the_publish_cadence_follows_the_config():
    from orchestrator.config import load_config
    from orchestrator.rl.training import publish_cadence

    quickstart = "configs/quickstart.yaml"  # reproducible: true
    assert publish_cadence(load_config(quickstart)) == 0.0
    assert publish_cadence(load_config(quickstart, ["curriculum.reproducible=false"])) == 5.0  # = refresh_every_seconds
    assert publish_cadence(load_config(quickstart, ["curriculum.reproducible=false",
                                                    "curriculum.publish_every_seconds=0.5"])) == 0.5
    assert publish_cadence(load_config(quickstart, ["curriculum.publish_every_seconds=3"])) == 0.0
