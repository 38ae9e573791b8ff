"""Fault matrix: kill every part of a running `mto train` and measure what survives.

Each case starts a real local Ray head (this process owns it, with the dashboard so Ray's
state API answers), runs `mto train` as a separate process attached to it (`--address`),
and injects one fault the way it happens in life: a signal to the real process, found
through Ray's state API (`ray.util.state.list_actors` / `list_jobs`), a truncated file, a
real `mlflow server` killed and restarted, a second raylet stopped, a full tmpfs, the head's
GCS SIGKILLed and started again with its tables in a real `redis-server`. Nothing is
mocked. Every row is measured from the run's MLflow store and run folder afterwards.

    python -m benchmarks.fault_matrix                  # every case; table + benchmarks/results/fault_matrix.json
    python -m benchmarks.fault_matrix --cases driver_sigterm,corrupt_checkpoint --json /tmp/x.json

Columns: survived (the run reached its last iteration, MLflow status FINISHED, no duplicated
metric steps), env steps lost (sampled but not in the finished run's counts: iterations
trained again after a resume, or an iteration's shortfall against the median one),
episodes lost by the curriculum (RLlib's count of finished episodes minus the curriculum's;
negative = the curriculum counted episodes RLlib never received), time to recover.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"
MTO = str(Path(sys.executable).parent / "mto")
ITER_LINE = re.compile(r"^iter (\d+)/(\d+)")


@dataclass
class Row:
    """One fault's outcome, measured."""

    fault: str
    survived: bool
    env_steps_lost: int | None
    episodes_lost: int | None
    recover_s: float | None
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A negative loss is an accounting error, not a gain: e.g. RLlib counting fewer episodes
        # than the curriculum recorded means the policy did not resume with its counters
        # (issue 29: deleting the RL restore gave episodes_lost = -39 on a "survived" row).
        negative = [name for name in ("env_steps_lost", "episodes_lost")
                    if getattr(self, name) is not None and getattr(self, name) < 0]
        if negative and self.survived:
            self.survived = False
            self.outcome = f"accounting went negative ({', '.join(negative)}): {self.outcome}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_dashboard_agent_port(port: int) -> None:
    """Give the next local head's dashboard agent ``port`` instead of Ray's fixed default 52365.

    Another Ray on this machine (the test session's, a user's) holds 52365; a head whose agent
    cannot bind refuses job submissions ("No available agent to submit job"). `ray start` has
    `--dashboard-agent-listen-port`; `ray.init` has no argument for it, so its parameters'
    default is set here (`tests/test_ray_job_submit.py` starts its head with the flag).
    """
    from ray._private import parameter

    init = getattr(parameter.RayParams.__init__, "__wrapped__", parameter.RayParams.__init__)

    def with_agent_port(self, *args, **kwargs):
        kwargs.setdefault("dashboard_agent_listen_port", port)
        init(self, *args, **kwargs)

    with_agent_port.__wrapped__ = init
    parameter.RayParams.__init__ = with_agent_port


class Cluster:
    """A local Ray head owned by this process (stopped with it), dashboard on for the state API."""

    api: str = ""

    def __enter__(self) -> "Cluster":
        import ray
        from ray._private.utils import write_ray_address

        port = free_port()
        _own_dashboard_agent_port(free_port())
        # A temp dir of its own (short: Ray's unix sockets live under it), and this head's address
        # recorded in it, as `ray start` and ray.cluster_utils.Cluster record theirs. A job submitted
        # here gets RAY_ADDRESS from that record (JobSupervisor: "auto" in the head's temp dir);
        # without one Ray falls back to any raylet it finds in `ps`, i.e. possibly another Ray on
        # this machine, whose GCS then cannot call back into our token-authenticated driver ("The
        # actor never ran - it was cancelled before it started running").
        self.temp_dir = tempfile.mkdtemp(prefix="mto-fm-", dir="/tmp")
        # address="local": always a new head, even when a `ray start` on this machine left its
        # address in /tmp/ray/ray_current_cluster (ray.init() would attach to that cluster).
        ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                 logging_level="ERROR", namespace="fault-matrix", _temp_dir=self.temp_dir)
        self.address = ray.get_runtime_context().gcs_address
        write_ray_address(self.address, self.temp_dir)
        # Other Ray instances may run on this machine: the state API must ask this one.
        Cluster.api = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    @staticmethod
    def actors(class_part: str, alive: bool = True) -> list[Any]:
        """Actors whose class name contains ``class_part`` (Ray's state API)."""
        from ray.util.state import list_actors

        filters = [("state", "=", "ALIVE")] if alive else None
        return [a for a in list_actors(address=Cluster.api, filters=filters, detail=True, limit=10_000) if class_part in a.class_name]

    @staticmethod
    def driver_pid(exclude: int) -> int:
        """The running `mto train` driver's pid, from Ray's job table."""
        from ray.util.state import list_jobs

        for job in list_jobs(address=Cluster.api):
            info = job.driver_info
            if job.status == "RUNNING" and info is not None and int(info.pid) != exclude:
                return int(info.pid)
        raise LookupError("no running driver")


class Train:
    """`mto train ...` as its own process; stdout is read line by line with arrival times."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self.log = log
        self.proc = subprocess.Popen([MTO, "train", *args, "--no-live"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with open(self.log, "a") as out:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                out.write(line)
                out.flush()

    def iterations(self) -> list[tuple[float, int]]:
        return [(t, int(m.group(1))) for t, line in self.lines if (m := ITER_LINE.match(line))]

    def wait_iteration(self, k: int, timeout: float = 900) -> float:
        """Block until iteration ``k`` is reported; returns when it was."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, i in self.iterations():
                if i >= k:
                    return t
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise RuntimeError(f"mto train exited ({self.proc.returncode}) before iteration {k}:\n{self.text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"no iteration {k} within {timeout}s:\n{self.text()[-3000:]}")

    def wait(self, timeout: float = 1800) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(10)
        return rc

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


class Case:
    """Per-case folder, MLflow store and environment."""

    def __init__(self, root: Path, name: str, tracking_uri: str | None = None) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = self.dir / "runs"
        self.tracking_uri = tracking_uri or f"sqlite:///{self.dir / 'mlflow.db'}"
        self.env = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri,
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        self.env.pop("RAY_ADDRESS", None)
        self.logs = 0

    def train(self, cluster: Cluster, *args: str, config: Path | None = SMOKE) -> Train:
        self.logs += 1
        head = [str(config)] if config is not None else []
        sets = [] if config is None else ["--set", f"run_dir={self.run_dir}"]
        return Train([*head, *sets, *args, "--address", cluster.address, "--run-dir", str(self.run_dir)],
                     self.env, self.dir / f"train_{self.logs}.log")

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    def runs(self) -> list[Any]:
        client = self.client()
        ids = [e.experiment_id for e in client.search_experiments()]
        return client.search_runs(ids, order_by=["attributes.start_time ASC"]) if ids else []

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client().get_metric_history(run_id, key))


def _sets(**values: Any) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        out += ["--set", f"{key.replace('__', '.')}={value}"]
    return out


def run_facts(case: Case, run_id: str) -> dict[str, Any]:
    """What the finished run holds: status, logged steps (duplicates?), final counts."""
    client = case.client()
    run = client.get_run(run_id)
    steps = case.history(run_id, "env_steps_total")
    step_numbers = [s for s, _ in steps]
    metrics = run.data.metrics
    rllib = metrics.get("episodes_completed_total")
    # The curriculum's count from the final checkpoint (every wrapper flushed before it is
    # written), not from the last metrics (logged before that flush).
    run_path = Path(run.data.tags.get("mto.run_path", ""))
    curriculum = sum(v for k, v in metrics.items() if k.startswith("episodes/"))
    state_file = run_path / "trainer_state.json"
    if state_file.is_file():
        checkpoint = json.loads(state_file.read_text()).get("checkpoint")
        if checkpoint and Path(checkpoint, "curriculum.pkl").is_file():
            import pickle

            with open(Path(checkpoint, "curriculum.pkl"), "rb") as f:
                curriculum = float(pickle.load(f)["state"]["episodes"].sum())
    per_iter = [b - a for (_, a), (_, b) in zip([(0, 0.0)] + steps[:-1], steps)]
    return {
        "status": run.info.status,
        "steps_logged": step_numbers,
        "duplicated_steps": len(step_numbers) - len(set(step_numbers)),
        "env_steps_total": int(steps[-1][1]) if steps else 0,
        "env_steps_per_iteration": [int(x) for x in per_iter],
        "curriculum_episodes": int(curriculum),
        "rllib_episodes": None if rllib is None else int(rllib),
        "run_path": run.data.tags.get("mto.run_path"),
    }


def _episodes_lost(facts: dict[str, Any]) -> int | None:
    return None if facts["rllib_episodes"] is None else facts["rllib_episodes"] - facts["curriculum_episodes"]


def _shortfall(facts: dict[str, Any]) -> int:
    """Env steps that iterations sampling under 90% of the median iteration fell short by (work a
    fault threw away; PPO's batches vary by a few percent on their own, which is not counted)."""
    per = facts["env_steps_per_iteration"]
    if not per:
        return 0
    median = statistics.median(per)
    return int(sum(median - x for x in per if x < 0.9 * median))


def _finished(rc: int, facts: dict[str, Any], iterations: int) -> bool:
    return (rc == 0 and facts["status"] == "FINISHED" and facts["duplicated_steps"] == 0
            and facts["steps_logged"][-1:] == [iterations])


def _wait_alive(cluster: Cluster, class_part: str, old_pid: int, timeout: float = 300, count: int = 1) -> float | None:
    """Seconds until ``count`` actors of that class are ALIVE again, none in the killed process (None: never)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        alive = [a for a in cluster.actors(class_part) if a.pid]
        if len(alive) >= count and all(a.pid != old_pid for a in alive):
            return time.monotonic() - start
        time.sleep(0.2)
    return None


# ----------------------------------------------------------------------------- cases


def case_envrunner_sigkill(cluster: Cluster, case: Case) -> Row:
    """SIGKILL the EnvRunner process mid-iteration; RLlib restarts it (restart_failed_env_runners)."""
    iterations = 8
    train = case.train(cluster, *_sets(training__iterations=iterations, training__checkpoint_every=4))
    train.wait_iteration(2)
    runner = cluster.actors("EnvRunner")[0]
    time.sleep(0.3)  # inside iteration 3's sampling
    os.kill(runner.pid, signal.SIGKILL)
    recover = _wait_alive(cluster, "EnvRunner", runner.pid)
    rc = train.wait()
    run_id = case.runs()[-1].info.run_id
    facts = run_facts(case, run_id)
    restarts = max((a.num_restarts for a in cluster.actors("EnvRunner", alive=False)), default=0)
    facts.update(killed_pid=runner.pid, env_runner_restarts=restarts, rc=rc)
    survived = _finished(rc, facts, iterations)
    return Row("EnvRunner SIGKILLed mid-iteration", survived, _shortfall(facts), _episodes_lost(facts), recover,
               "RLlib restarted the runner; run finished" if survived else f"run failed (rc {rc})", facts)


def case_curriculum_actor_sigkill(cluster: Cluster, case: Case) -> Row:
    """SIGKILL the CurriculumActor; Ray restarts it (max_restarts) from its own checkpoint file."""
    iterations = 8
    train = case.train(cluster, *_sets(training__iterations=iterations, training__checkpoint_every=4,
                                       curriculum__checkpoint_every_seconds=2))
    train.wait_iteration(3)
    actor = cluster.actors("CurriculumActor")[0]
    os.kill(actor.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    recover = _wait_alive(cluster, "CurriculumActor", actor.pid)
    iteration_after = next((i for t, i in train.iterations() if t > killed_at), None)
    rc = train.wait()
    run_id = case.runs()[-1].info.run_id
    facts = run_facts(case, run_id)
    restored = case.history(run_id, "actor/restored")
    facts.update(killed_pid=actor.pid, rc=rc, actor_restored_steps=[s for s, v in restored if v > 0])
    survived = _finished(rc, facts, iterations) and bool(facts["actor_restored_steps"])
    return Row("CurriculumActor SIGKILLed", survived, _shortfall(facts), _episodes_lost(facts), recover,
               "restored from its checkpoint file; run finished" if survived else f"run failed (rc {rc})",
               {**facts, "first_iteration_after_kill": iteration_after})


def case_driver_sigterm(cluster: Cluster, case: Case) -> Row:
    """SIGTERM the driver (`kill`, `ray job stop`): it finishes the iteration, checkpoints, exits 143."""
    train = case.train(cluster, *_sets(training__iterations=200, training__checkpoint_every=100))
    train.wait_iteration(3)
    pid = cluster.driver_pid(exclude=os.getpid())
    sent = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    rc = train.wait(600)
    exit_s = time.monotonic() - sent
    run = case.runs()[-1]
    facts = run_facts(case, run.info.run_id)
    last = facts["steps_logged"][-1]
    state = json.loads((Path(facts["run_path"]) / "trainer_state.json").read_text())
    checkpoint_ok = state["checkpoint"].endswith(f"iter_{last:06d}") and Path(state["checkpoint"], "manifest.json").is_file()
    facts.update(rc=rc, driver_pid=pid, checkpoint=state["checkpoint"], checkpoint_at_last_iteration=checkpoint_ok)
    survived = rc == 143 and checkpoint_ok and facts["status"] == "KILLED"
    return Row("driver SIGTERM", survived, 0 if checkpoint_ok else None, _episodes_lost(facts),
               exit_s, f"final checkpoint at iteration {last}, exit {rc}, MLflow {facts['status']}", facts)


def case_driver_sigkill_resume(cluster: Cluster, case: Case) -> Row:
    """SIGKILL the driver between checkpoints, then `mto train --resume RUN`."""
    # Killed after iteration 5, between the checkpoints of 4 and 8 (3 iterations of margin for
    # the signal to land on a fast machine).
    iterations = 10
    train = case.train(cluster, *_sets(training__iterations=iterations, training__checkpoint_every=4))
    train.wait_iteration(5)
    pid = cluster.driver_pid(exclude=os.getpid())
    os.kill(pid, signal.SIGKILL)
    train.wait(300)
    killed_at = time.monotonic()
    run = case.runs()[-1]
    run_id = run.info.run_id
    before = case.history(run_id, "env_steps_total")
    state = json.loads((Path(run.data.tags["mto.run_path"]) / "trainer_state.json").read_text())
    # The dead driver's actors are reaped by Ray with its job; the resumed run's must be the only ones.
    _wait_for(lambda: not cluster.actors("CurriculumActor") and not cluster.actors("EnvRunner"), 300,
              "the killed driver's actors were not reaped", every=0.5)
    resumed = case.train(cluster, "--resume", run_id, config=None)
    first = resumed.wait_iteration(state["iteration"] + 1)
    rc = resumed.wait()
    facts = run_facts(case, run_id)
    lost = int(before[-1][1] - state["env_steps"]) if before else 0
    facts.update(rc=rc, driver_pid=pid, resumed_from_iteration=state["iteration"],
                 last_logged_before_kill=before[-1][0] if before else 0, runs_in_store=len(case.runs()))
    survived = _finished(rc, facts, iterations) and facts["runs_in_store"] == 1
    return Row("driver SIGKILL, then --resume", survived, lost, _episodes_lost(facts), first - killed_at,
               f"resumed from iteration {state['iteration']} into the same MLflow run; finished" if survived
               else f"resume failed (rc {rc})", facts)


def case_ray_job_stop(cluster: Cluster, case: Case, wait_s: int | None = 120) -> Row:
    """`mto train` submitted as a Ray job, then `ray job stop` (SIGTERM to the driver, SIGKILL
    `RAY_JOB_STOP_WAIT_TIME_S` later; 120 s here, set in the job's runtime env: on busy cores the
    iteration in progress and the final checkpoint can take tens of seconds)."""
    from ray.job_submission import JobStatus, JobSubmissionClient
    from ray.util.state import list_jobs

    client = JobSubmissionClient(Cluster.api)
    entrypoint = (f"{MTO} train {SMOKE} --set run_dir={case.run_dir} --set training.iterations=300 "
                  f"--set training.checkpoint_every=100 --no-live")
    env_vars = {"MLFLOW_TRACKING_URI": case.tracking_uri, "COLUMNS": "200"}
    if wait_s is not None:
        env_vars["RAY_JOB_STOP_WAIT_TIME_S"] = str(wait_s)
    def submit() -> str | None:
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env={"env_vars": env_vars})
        except RuntimeError as exc:  # the head's job agent starts a little after the head itself
            if "No available agent" in str(exc):
                return None
            raise

    # Generous: on 2 busy cores the job agent and the job's own Ray worker start take minutes.
    job = _wait_for(submit, 300, "the job agent did not accept the job", every=1)
    ended = (JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED)

    def at_iteration_3() -> bool:
        if re.search(r"^iter 3/", client.get_job_logs(job), re.M):
            return True
        if (status := client.get_job_status(job)) in ended:  # ended on its own: say so now, not after the timeout
            logs = client.get_job_logs(job)
            (case.dir / "job.log").write_text(logs)
            tail = " | ".join([line for line in logs.splitlines() if line.strip()][-3:])
            raise RuntimeError(f"the job ended ({status}) before iteration 3 ({case.dir / 'job.log'}): {tail}")
        return False

    _wait_for(at_iteration_3, 900, "the job did not reach iteration 3", every=0.5)
    # The job's driver joined this cluster, not another Ray on the machine (see Cluster.__enter__).
    attached_here = any(j.submission_id == job and j.job_id for j in list_jobs(address=Cluster.api))
    sent = time.monotonic()
    client.stop_job(job)
    # SIGKILL follows the SIGTERM after RAY_JOB_STOP_WAIT_TIME_S: the job has ended well within 300 s.
    status = _wait_for(lambda: (st := client.get_job_status(job)) in ended and st, 300, "job did not stop", every=0.5)
    stop_s = time.monotonic() - sent
    logs = client.get_job_logs(job)
    (case.dir / "job.log").write_text(logs)
    run = case.runs()[-1]
    facts = run_facts(case, run.info.run_id)
    last = facts["steps_logged"][-1]
    state = json.loads((Path(facts["run_path"]) / "trainer_state.json").read_text())
    checkpoint_ok = state["checkpoint"].endswith(f"iter_{last:06d}") and Path(state["checkpoint"], "manifest.json").is_file()
    facts.update(job_status=str(status), checkpoint=state["checkpoint"], checkpoint_at_last_iteration=checkpoint_ok,
                 said_stopped="stopped by SIGTERM" in logs, driver_attached_here=attached_here)
    survived = checkpoint_ok and facts["status"] == "KILLED" and facts["said_stopped"] and attached_here
    return Row("`ray job stop` of a submitted run", survived, 0 if checkpoint_ok else None, _episodes_lost(facts), stop_s,
               f"final checkpoint at iteration {last}, job {status}, MLflow {facts['status']}" if survived
               else "see details", facts)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def case_corrupt_checkpoint(cluster: Cluster, case: Case) -> Row:
    """Truncate a file of the newest checkpoint; `--resume` names it and falls back; with every
    checkpoint bad it exits 2 and changes nothing."""
    train = case.train(cluster, *_sets(training__iterations=4, training__checkpoint_every=1))
    assert train.wait() == 0, train.text()[-2000:]
    run = case.runs()[-1]
    run_id, run_path = run.info.run_id, Path(run.data.tags["mto.run_path"])
    newest = run_path / "checkpoints" / "iter_000004"
    victim = max((p for p in newest.rglob("*") if p.is_file() and p.name != "manifest.json"), key=lambda p: p.stat().st_size)
    with open(victim, "r+b") as f:  # a copy cut short, as a full disk or a killed copy leaves it
        f.truncate(victim.stat().st_size // 2)
    bad_digest = _tree_digest(newest)
    before = case.history(run_id, "env_steps_total")
    started = time.monotonic()
    resumed = case.train(cluster, "--resume", run_id, *_sets(training__iterations=6), config=None)
    first = resumed.wait_iteration(4)
    rc = resumed.wait()
    facts = run_facts(case, run_id)
    set_aside = run_path / "checkpoints" / "iter_000004.bad"
    named = str(victim.relative_to(run_path)) in resumed.text().replace("\n", "") or victim.name in resumed.text()
    kept = set_aside.is_dir() and _tree_digest(set_aside) == bad_digest
    # Now every checkpoint bad: exit 2, nothing renamed or written.
    for folder in [p for p in (run_path / "checkpoints").iterdir() if p.name.startswith("iter_") and not p.name.endswith(".bad")]:
        (folder / "curriculum.pkl").write_bytes(b"garbage")
    snapshot = _tree_digest(run_path)
    none_good = case.train(cluster, "--resume", run_id, config=None)
    rc_none = none_good.wait(120)
    unchanged = _tree_digest(run_path) == snapshot
    lost = int(before[3][1] - before[2][1]) if len(before) >= 4 else None
    facts.update(rc=rc, victim=str(victim), file_named=named, bad_checkpoint_kept_unchanged=kept,
                 rc_when_none_good=rc_none, none_good_message=none_good.text()[-600:], folder_unchanged=unchanged)
    survived = _finished(rc, facts, 6) and named and kept and rc_none == 2 and unchanged
    return Row("newest checkpoint truncated, then --resume", survived, lost, _episodes_lost(facts), first - started,
               "named the file, set it aside, resumed from iteration 3; all bad: exit 2, nothing written"
               if survived else "see details", facts)


def case_concurrent_run_dir(cluster: Cluster, case: Case) -> Row:
    """Two `mto train` started at once in the same run_dir."""
    started = time.monotonic()
    a = case.train(cluster, *_sets(training__iterations=3))
    b = case.train(cluster, *_sets(training__iterations=3))
    rcs = [a.wait(), b.wait()]
    runs = case.runs()
    paths = [r.data.tags.get("mto.run_path") for r in runs]
    own_state = all(json.loads((Path(p) / "trainer_state.json").read_text())["mlflow_run_id"] == r.info.run_id
                    for p, r in zip(paths, runs))
    facts = {"rc": rcs, "run_paths": paths, "statuses": [r.info.status for r in runs], "state_matches_run": own_state,
             "folders": sorted(p.name for p in case.run_dir.iterdir() if p.is_dir())}
    survived = rcs == [0, 0] and len(set(paths)) == 2 and own_state and facts["statuses"] == ["FINISHED"] * 2
    facts["seconds"] = round(time.monotonic() - started, 1)
    return Row("two runs at once in one run_dir", survived, 0, None, None,
               "two folders, two MLflow runs, both finished" if survived else "see details", facts)


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``predicate`` every ``every`` s until it returns something truthy (returned)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} within {timeout}s")


def case_full_disk(cluster: Cluster, case: Case) -> Row:
    """run_dir on a small tmpfs that another writer fills after the first checkpoint; freed later."""
    mount = case.dir / "tmpfs"
    mount.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        run_dir = mount / "runs"
        iterations = 16
        train = Train([str(SMOKE), *_sets(run_dir=run_dir, training__iterations=iterations, training__checkpoint_every=2),
                       "--address", cluster.address], case.env, case.dir / "train.log")
        from orchestrator.runs.checkpoints import checkpoint_dirs

        run_path = _wait_for(lambda: next((p for p in run_dir.iterdir() if p.is_dir()), None) if run_dir.is_dir() else None,
                             120, "no run folder")
        _wait_for(lambda: checkpoint_dirs(run_path), 120, "no checkpoint")
        filler = mount / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # stops at ENOSPC
        full_at = time.monotonic()
        kept = checkpoint_dirs(run_path)[-1]
        kept_digest = _tree_digest(kept)
        full_iteration = max((i for _, i in train.iterations()), default=0)
        train.wait_iteration(full_iteration + 5)
        intact = _tree_digest(kept) == kept_digest
        refused = re.findall(r"checkpoint (iter_\d+) not written", train.text())
        filler.unlink()
        rc = train.wait()
        facts = run_facts(case, case.runs()[-1].info.run_id)
        leftovers = [p.name for p in (run_path / "checkpoints").iterdir() if p.name.startswith(".")]
        written = sorted(p.name for p in (run_path / "checkpoints").iterdir() if not p.name.startswith("."))
        facts.update(rc=rc, refused_checkpoints=refused, kept_checkpoint=kept.name, kept_intact_while_full=intact,
                     filled_after_iteration=full_iteration, staging_leftovers=leftovers, checkpoints_at_end=written,
                     full_for_s=round(time.monotonic() - full_at, 1))
        survived = (_finished(rc, facts, iterations) and bool(refused) and intact and not leftovers
                    and f"iter_{iterations:06d}" in written)
        return Row("disk full while checkpointing (24 MiB tmpfs)", survived, 0, _episodes_lost(facts), None,
                   f"{len(refused)} checkpoint(s) refused and reported, {kept.name} kept intact; run finished"
                   if survived else "see details", facts)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _wait_http(url: str, timeout: float = 120) -> None:
    import urllib.request

    def ok() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    _wait_for(ok, timeout, f"{url} did not answer")


def case_mlflow_outage(cluster: Cluster, case: Case, outage_s: float = 60.0) -> Row:
    """A real `mlflow server` on loopback, SIGKILLed for a minute mid-run, then started again."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    case.tracking_uri = uri
    case.env["MLFLOW_TRACKING_URI"] = uri
    server_cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                  f"sqlite:///{case.dir / 'server.db'}", "--artifacts-destination", str(case.dir / "artifacts"),
                  "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]

    def start() -> subprocess.Popen:
        log = open(case.dir / "mlflow_server.log", "a")
        # Its own session, so the server and its workers are killed together, as a crashed host would.
        return subprocess.Popen(server_cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=case.env)

    server = start()
    try:
        _wait_http(f"{uri}/health")
        iterations = 150
        train = case.train(cluster, *_sets(training__iterations=iterations, training__checkpoint_every=20,
                                           training__plot_every=20))
        train.wait_iteration(5)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        down_at = time.monotonic()
        down_iteration = max(i for _, i in train.iterations())
        time.sleep(outage_s)
        during = max(i for _, i in train.iterations()) - down_iteration
        server = start()
        _wait_http(f"{uri}/health")
        up_at = time.monotonic()
        rc = train.wait()
        run = case.runs()[-1]
        facts = run_facts(case, run.info.run_id)
        text = train.text()
        kept_file = Path(facts["run_path"]) / "metrics_unsent.jsonl"
        back = re.search(r"tracking server back", text) is not None
        facts.update(rc=rc, outage_s=round(up_at - down_at, 1), iterations_during_outage=during,
                     unsent_file_left=kept_file.exists(), reported_back=back)
        survived = (_finished(rc, facts, iterations) and facts["steps_logged"] == list(range(1, iterations + 1))
                    and during > 0 and not kept_file.exists())
        recover = None
        if back:
            back_at = next(t for t, line in train.lines if "tracking server back" in line)
            recover = back_at - up_at
        return Row(f"MLflow server down for {outage_s:.0f} s", survived, 0, _episodes_lost(facts), recover,
                   f"{during} iterations trained during the outage; their metrics kept in the run folder and sent "
                   "when the server was back; FINISHED" if survived else "see details", facts)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            out += [child, *_children(child)]
    return out


def case_node_loss(cluster: Cluster, case: Case) -> Row:
    """A second raylet (`ray start --address=...`, 2 CPUs of its own) is SIGKILLed, with its workers,
    while one of the run's two EnvRunners samples on it."""
    from ray.util.state import list_nodes

    ray_cli = str(Path(sys.executable).parent / "ray")
    # `ray start --address` records the cluster it joined in the head's temp dir, which is the
    # Cluster's own (not /tmp/ray, where a later plain ray.init(), anyone's, would attach to it).
    worker = subprocess.Popen([ray_cli, "start", "--address", cluster.address, "--num-cpus", "2", "--block",
                               "--disable-usage-stats"], stdout=open(case.dir / "worker_node.log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True, env=case.env)
    try:
        _wait_for(lambda: len([n for n in list_nodes(address=Cluster.api) if n.state == "ALIVE"]) >= 2, 120,
                  "the second node did not join")
        head = next(n.node_id for n in list_nodes(address=Cluster.api) if n.is_head_node)
        iterations = 12
        train = case.train(cluster, *_sets(training__iterations=iterations, training__checkpoint_every=4,
                                           rl__num_env_runners=2, rl__num_cpus_per_env_runner=1))
        train.wait_iteration(3)
        on_worker = [a for a in cluster.actors("EnvRunner") if a.node_id != head]
        if not on_worker:
            rc = train.wait()
            return Row("worker node lost", False, None, None, None,
                       "no EnvRunner was placed on the second node; nothing to lose", {"rc": rc})
        lost_node = on_worker[0].node_id
        pids = _children(worker.pid)
        killed_at = time.monotonic()
        for pid in [worker.pid, *pids]:  # the node's raylet, its workers, the `ray start` that owns them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait()
        recover = _wait_alive(cluster, "EnvRunner", on_worker[0].pid, timeout=180, count=2)
        rc = train.wait()
        facts = run_facts(case, case.runs()[-1].info.run_id)
        dead = [n.node_id for n in list_nodes(address=Cluster.api) if n.state == "DEAD"]
        facts.update(rc=rc, lost_node=lost_node, node_marked_dead=lost_node in dead, runners_on_lost_node=len(on_worker),
                     recover_from_kill_s=None if recover is None else round(recover, 1))
        survived = _finished(rc, facts, iterations)
        return Row("worker node lost (second raylet SIGKILLed)", survived, _shortfall(facts), _episodes_lost(facts),
                   recover, "the runner was restarted on the head node; run finished" if survived
                   else f"run ended with exit {rc}", facts)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


class RedisServer:
    """A real `redis-server` on loopback with a password, in-memory only, stopped with the case."""

    def __init__(self, folder: Path) -> None:
        import secrets

        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.password = secrets.token_hex(16)
        # The configuration (password included) on stdin: it stays off the command line.
        self.proc = subprocess.Popen([binary, "-"], stdin=subprocess.PIPE, stdout=open(folder / "redis.log", "a"),
                                     stderr=subprocess.STDOUT, cwd=folder, start_new_session=True, text=True)
        self.proc.stdin.write(f"port {self.port}\nbind 127.0.0.1\nrequirepass {self.password}\nsave \"\"\n"
                              f"appendonly no\ndir {folder}\n")
        self.proc.stdin.close()
        deadline = time.monotonic() + 20
        while self.keys() is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start; see {folder / 'redis.log'}")
            time.sleep(0.1)

    def keys(self) -> int | None:
        """Number of keys (DBSIZE), None while it does not answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                conn.sendall(f"AUTH {self.password}\r\nDBSIZE\r\n".encode())
                reply = b""
                while reply.count(b"\r\n") < 2:
                    chunk = conn.recv(256)
                    if not chunk:
                        return None
                    reply += chunk
        except OSError:
            return None
        lines = reply.split(b"\r\n")
        return int(lines[1][1:]) if lines[0] == b"+OK" and lines[1].startswith(b":") else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class RedisBackedCluster(Cluster):
    """A local head whose GCS keeps its tables in `redis` (Ray's GCS fault tolerance:
    RAY_REDIS_ADDRESS + the Redis password + RAY_external_storage_namespace), started through
    `ray.cluster_utils.Cluster` so its GCS can be killed and started again on the same port
    (`Node.kill_gcs_server` / `Node.start_gcs_server`, what Ray's own GCS fault-tolerance tests use)."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis

    def __enter__(self) -> "RedisBackedCluster":
        import uuid

        import ray
        from ray.cluster_utils import Cluster as RayCluster

        port = free_port()
        self.temp_dir = tempfile.mkdtemp(prefix="mto-fm-gcs-", dir="/tmp")
        # RAY_TMPDIR: ray.cluster_utils records the head's address under Ray's default temp dir;
        # this case's own keeps that record from pointing anyone else's ray.init() here.
        self._env = {"RAY_REDIS_ADDRESS": f"127.0.0.1:{self.redis.port}",
                     "RAY_external_storage_namespace": f"mto-fault-matrix-{uuid.uuid4().hex[:8]}",
                     "RAY_TMPDIR": self.temp_dir}
        self._saved_env = {key: os.environ.get(key) for key in self._env}
        os.environ.update(self._env)  # read by the head's Node and inherited by its processes
        Path(self.temp_dir, "ray").mkdir()
        self.ray_cluster = RayCluster(initialize_head=True, connect=False, head_node_args={
            "num_cpus": 2, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port,
            "dashboard_agent_listen_port": free_port(), "redis_password": self.redis.password,
            "temp_dir": self.temp_dir, "node_ip_address": "127.0.0.1"})
        self.address = self.ray_cluster.address
        ray.init(address=self.address, namespace="fault-matrix", logging_level="ERROR")
        Cluster.api = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()
        self.ray_cluster.shutdown()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def gcs_pid(self) -> int:
        from ray._private import ray_constants

        return self.ray_cluster.head_node.all_processes[ray_constants.PROCESS_TYPE_GCS_SERVER][0].process.pid


def case_gcs_restart_redis(cluster: Cluster | None, case: Case, restart_after_s: float = 5.0) -> Row:
    """The head node's GCS SIGKILLed mid-run and started again `restart_after_s` later, its tables in Redis."""
    import ray

    redis = RedisServer(case.dir)
    try:
        with RedisBackedCluster(redis) as gcs_cluster:
            iterations = 40  # long enough that the run is still going when the GCS is back
            train = case.train(gcs_cluster, *_sets(training__iterations=iterations, training__checkpoint_every=10,
                                                   curriculum__checkpoint_every_seconds=2))
            train.wait_iteration(3)
            (actor,) = Cluster.actors("CurriculumActor")
            runners_before = {a.pid for a in Cluster.actors("EnvRunner")}
            keys_before = redis.keys()
            gcs_pid = gcs_cluster.gcs_pid()
            os.kill(gcs_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            head = gcs_cluster.ray_cluster.head_node
            head.kill_gcs_server(check_alive=False)  # Ray's bookkeeping of the dead process
            iteration_at_kill = max(i for _, i in train.iterations())
            time.sleep(restart_after_s)
            iteration_at_restart = max(i for _, i in train.iterations())
            head.start_gcs_server()
            # Recovered: the restarted GCS answers for the CurriculumActor, and the actor itself answers.
            recover = None
            handle = ray.get_actor(actor.name, namespace="mto")
            while time.monotonic() - killed_at < 300:
                try:
                    ray.get(handle.ready.remote(), timeout=5)
                    if any(a.pid == actor.pid for a in Cluster.actors("CurriculumActor")):
                        recover = time.monotonic() - killed_at
                        break
                except Exception:  # noqa: BLE001 - GCS still coming back
                    time.sleep(0.5)
            next_iteration = next((t for t, i in train.iterations() if i > iteration_at_kill), None)
            rc = train.wait()
            actor_after = [a for a in Cluster.actors("CurriculumActor", alive=False) if a.actor_id == actor.actor_id]
            runners_after = {a.pid for a in Cluster.actors("EnvRunner", alive=False)}
            run = case.runs()[-1]
            facts = run_facts(case, run.info.run_id)
    finally:
        redis.stop()
    same_actor = bool(actor_after) and actor_after[0].pid == actor.pid and actor_after[0].num_restarts == 0
    facts.update(rc=rc, gcs_pid=gcs_pid, redis_keys_before_kill=keys_before, restart_after_s=restart_after_s,
                 curriculum_actor_same_process=same_actor, env_runners_replaced=sorted(runners_after - runners_before),
                 iteration_at_kill=iteration_at_kill, iterations_while_gcs_down=iteration_at_restart - iteration_at_kill,
                 iterations_after_restart=iterations - iteration_at_restart,
                 first_iteration_after_kill_s=None if next_iteration is None else round(next_iteration - killed_at, 1))
    survived = (_finished(rc, facts, iterations) and same_actor and recover is not None and bool(keys_before)
                and facts["iterations_after_restart"] > 0)
    return Row("head node's GCS killed and restarted, with Redis", survived, _shortfall(facts), _episodes_lost(facts),
               recover, (f"{facts['iterations_while_gcs_down']} iterations trained while the GCS was down; it came back "
                         f"on its port from Redis ({keys_before} keys) and the CurriculumActor, EnvRunners and MLflow "
                         "run went on in the same processes; FINISHED") if survived else "see details", facts)


CASES: dict[str, Callable[[Cluster, Case], Row]] = {
    "envrunner_sigkill": case_envrunner_sigkill,
    "curriculum_actor_sigkill": case_curriculum_actor_sigkill,
    "driver_sigterm": case_driver_sigterm,
    "driver_sigkill_resume": case_driver_sigkill_resume,
    "ray_job_stop": case_ray_job_stop,
    "corrupt_checkpoint": case_corrupt_checkpoint,
    "concurrent_run_dir": case_concurrent_run_dir,
    "full_disk": case_full_disk,
    "mlflow_outage": case_mlflow_outage,
    "node_loss": case_node_loss,
    "gcs_restart_redis": case_gcs_restart_redis,
}
# Cases that start a Ray head of their own (started inside the case, never beside the shared one).
OWN_CLUSTER = {"gcs_restart_redis"}


def run_cases(names: list[str], root: Path) -> list[Row]:
    rows = []

    def run(name: str, cluster: Cluster | None) -> None:
        case = Case(root, name)
        started = time.monotonic()
        try:
            row = CASES[name](cluster, case)
        except Exception as exc:  # noqa: BLE001 - a case that breaks the harness is a row that did not survive
            row = Row(name, False, None, None, None, f"harness error: {type(exc).__name__}: {exc}"[:400])
        row.details["case"] = name
        row.details["case_seconds"] = round(time.monotonic() - started, 1)
        rows.append(row)
        print(f"{name}: survived={row.survived} ({row.details['case_seconds']} s) {row.outcome}", flush=True)

    shared = [n for n in names if n not in OWN_CLUSTER]
    if shared:
        with Cluster() as cluster:
            for name in shared:
                run(name, cluster)
    for name in names:
        if name in OWN_CLUSTER:
            run(name, None)
    return rows


def table(rows: list[Row]) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.1f} s" if isinstance(v, float) else str(v)

    lines = ["| fault | survived | env steps lost | episodes lost by the curriculum | time to recover | what happened |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r.fault} | {'yes' if r.survived else 'no'} | {fmt(r.env_steps_lost)} | {fmt(r.episodes_lost)} "
                     f"| {fmt(r.recover_s)} | {r.outcome} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "fault_matrix.json"))
    parser.add_argument("--keep", action="store_true", help="keep the cases' run folders (printed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    names = [n for n in args.cases.split(",") if n]
    from orchestrator.runs.local_ray import secure_local_ray

    # Token auth always; loopback only without node_loss, whose second node must reach the head.
    secure_local_ray(loopback="node_loss" not in names)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {list(CASES)}")
    root = Path(tempfile.mkdtemp(prefix="mto-faults-"))
    started = time.monotonic()
    try:
        rows = run_cases(names, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"case folders kept under {root}")
    print(table(rows))
    out = {"command": "python -m benchmarks.fault_matrix " + " ".join(argv if argv is not None else sys.argv[1:]),
           "seconds": round(time.monotonic() - started, 1), "rows": [asdict(r) for r in rows]}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0 if all(r.survived for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
