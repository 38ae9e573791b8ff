"""The CurriculumActor: one curriculum scheduler served to every environment runner.

Wrappers inside the EnvRunners send `EpisodeOutcomes` batches fire-and-forget
(`report`) and pull the versioned distribution now and then (`distribution`);
the driver reads `metrics()` once per iteration. The actor saves its state to
`checkpoint_path` every N reports or S seconds and loads it again when Ray
restarts it (`max_restarts`), so a crash loses at most the outcomes since the
last save.

Outcome batches are idempotent: each client numbers its batches (one runner
id, sequence 1, 2, ...), and the actor keeps, per runner, which numbers it has
absorbed, saved in the same file as the scheduler state. When the actor dies
after absorbing (and saving) a batch but before its answer reaches the client,
Ray retries the call on the restarted actor (`max_task_retries=-1`); the
restored state already holds that number, so the retry is acknowledged and not
counted again. A batch absorbed but not yet saved is absent from both the
restored state and the restored numbers, so its retry is absorbed once.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError

from curricula import CURRICULUM_KINDS, Curriculum, CurriculumDistribution, EpisodeOutcomes, build_curriculum

__all__ = ["CurriculumActor", "ActorCurriculumClient", "start_curriculum_actor", "CHECKPOINT_FORMAT"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
# After a restore the version jumps by this much, so a number that a wrapper
# saw before the crash (but that the checkpoint predates) is never reused.
VERSION_GAP_AFTER_RESTORE = 1 << 20


def _build(scheduler: Curriculum | dict[str, Any]) -> Curriculum:
    if isinstance(scheduler, Curriculum) and CURRICULUM_KINDS.get(scheduler.kind) is type(scheduler):
        # A scheduler shipped through Ray's object store arrives with read-only numpy
        # arrays (zero-copy); its state must be writable, so own a copy.
        return copy.deepcopy(scheduler)
    if isinstance(scheduler, dict):
        params = dict(scheduler)
        try:
            kind, task_names = params.pop("kind"), params.pop("task_names")
        except KeyError as missing:
            raise ValueError(f"scheduler settings need {missing}; got keys {sorted(scheduler)}") from None
        return build_curriculum(kind, task_names, params.pop("item_names", None), **params)
    raise TypeError(
        f"scheduler must be a curricula.Curriculum or a dict of build_curriculum arguments, got {type(scheduler).__name__}"
    )


class RunnerSequences:
    """Which batch numbers each runner has had absorbed: a contiguous watermark plus the few
    numbers above it that arrived early (Ray keeps one caller's calls in order, but a retry
    after a restart must not be mistaken for a gap)."""

    def __init__(self) -> None:
        self.watermark: dict[str, int] = {}
        self.above: dict[str, set[int]] = {}

    def seen(self, runner: str, sequence: int) -> bool:
        return sequence <= self.watermark.get(runner, 0) or sequence in self.above.get(runner, ())

    def add(self, runner: str, sequence: int) -> None:
        mark = self.watermark.get(runner, 0)
        early = self.above.setdefault(runner, set())
        early.add(sequence)
        while mark + 1 in early:
            mark += 1
            early.discard(mark)
        self.watermark[runner] = mark
        if not early:
            del self.above[runner]

    def state_dict(self) -> dict[str, Any]:
        return {"watermark": dict(self.watermark), "above": {r: sorted(s) for r, s in self.above.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.watermark = {str(r): int(m) for r, m in state.get("watermark", {}).items()}
        self.above = {str(r): {int(x) for x in s} for r, s in state.get("above", {}).items() if s}


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CurriculumActor:
    """Wraps one scheduler; run it with `start_curriculum_actor` (a plain class, so it also works in-process).

    Args:
        scheduler: a `Curriculum`, or a dict ``{"kind", "task_names", "item_names", **params}``
            (as `Curriculum.config()` returns).
        checkpoint_path: file the state is saved to and restored from (None = no checkpoints).
        checkpoint_every_reports: save after this many `report` calls...
        checkpoint_every_seconds: ...or when this long has passed since the last save.
        initial_state: a `state_dict()` to start from when there is no checkpoint yet.
        publish_every_seconds: recompute the published distribution at most this often (0 = on
            every request that follows new outcomes). With hundreds of runners polling, 0 publishes
            a new version at nearly every poll, so each runner's copy is always many versions
            behind; a cadence makes a version a unit of time the runners can keep up with.
        crash_once_after_report: fault injection for tests only: a marker file path; the first
            `report` that finds it absent creates it and kills the process after absorbing (and
            saving, if due) but before answering. Off (None) in every run.
    """

    def __init__(
        self,
        scheduler: Curriculum | dict[str, Any],
        checkpoint_path: str | None = None,
        checkpoint_every_reports: int = 100,
        checkpoint_every_seconds: float = 30.0,
        initial_state: dict[str, Any] | None = None,
        crash_once_after_report: str | None = None,
        publish_every_seconds: float = 0.0,
    ) -> None:
        self.scheduler = _build(scheduler)
        if not (publish_every_seconds >= 0):
            raise ValueError(f"publish_every_seconds must be >= 0, got {publish_every_seconds}")
        self.publish_every_seconds = float(publish_every_seconds)
        self._published: CurriculumDistribution | None = None
        self._published_at = 0.0
        self.sequences = RunnerSequences()
        self.duplicate_reports = 0
        self.crash_once_after_report = crash_once_after_report
        if initial_state is not None:
            self.scheduler.load_state_dict(initial_state)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.checkpoint_every_reports = int(checkpoint_every_reports)
        self.checkpoint_every_seconds = float(checkpoint_every_seconds)
        self.reports = 0
        self.rejected_reports = 0
        self.last_rejection: str | None = None
        self.checkpoints_saved = 0
        self.failed_checkpoints = 0
        self.restored_from: str | None = None
        self.update_seconds = 0.0  # time spent inside scheduler.update (for overhead figures)
        if self.checkpoint_path is not None and self.checkpoint_path.exists():
            self._restore_or_set_aside(self.checkpoint_path)
        self._reports_since_save = 0
        self._last_save = time.monotonic()

    def _restore_or_set_aside(self, path: Path) -> None:
        """Restore from ``path``; a file a crash or a damaged disk tore is renamed ``<name>.torn``
        (kept) with one warning, and the actor starts from its initial state instead of dying,
        which Ray would repeat on every restart until the run failed."""
        try:
            self.load_checkpoint(str(path))
        except Exception as err:  # noqa: BLE001 - unpickling a torn file raises many kinds
            aside = path.with_name(path.name + ".torn")
            os.replace(path, aside)
            log.warning("curriculum state %s is unreadable (%s: %s); set aside as %s, starting from the initial state",
                        path, type(err).__name__, err, aside)

    def ready(self) -> bool:
        """Returns once the actor is constructed (and restored)."""
        return True

    def report(self, outcomes: EpisodeOutcomes, runner: str | None = None, sequence: int | None = None) -> int:
        """Absorb a batch; returns its size. A rejected batch raises ValueError and changes nothing
        in the curriculum.

        With `runner` and `sequence` (>= 1, one count per runner) the batch is absorbed at most
        once: a number already absorbed (a retry after a restart) is acknowledged, not counted.
        """
        numbered = runner is not None and sequence is not None
        if numbered:
            if sequence < 1:
                raise ValueError(f"report sequence numbers start at 1, got {sequence}")
            if self.sequences.seen(runner, sequence):
                self.duplicate_reports += 1
                return len(outcomes)
        start = time.perf_counter()
        try:
            self.scheduler.update(outcomes)
        except ValueError as err:
            self.rejected_reports += 1
            self.last_rejection = str(err)
            raise
        finally:
            # A rejected batch uses its number too: retrying it could only be rejected again.
            if numbered:
                self.sequences.add(runner, sequence)
        self.update_seconds += time.perf_counter() - start
        self.reports += 1
        self._reports_since_save += 1
        if self.checkpoint_path is not None and (
            self._reports_since_save >= self.checkpoint_every_reports
            or time.monotonic() - self._last_save >= self.checkpoint_every_seconds
        ):
            self._periodic_save()
        if self.crash_once_after_report is not None and not os.path.exists(self.crash_once_after_report):
            Path(self.crash_once_after_report).touch()
            os._exit(1)  # absorbed (and maybe saved), never answered: what a crash here looks like
        return len(outcomes)

    def _periodic_save(self) -> None:
        """A failed periodic save (full disk) must not fail the report: the batch is already
        absorbed, and an error here would crash the EnvRunner that sent it. The previous file
        stays intact (atomic write); the next report tries again."""
        try:
            self.save_checkpoint()
        except OSError as err:
            self.failed_checkpoints += 1
            self._last_save = time.monotonic()  # retry after another interval, not on every report
            log.warning("curriculum checkpoint %s not written (%s); the previous one is intact", self.checkpoint_path, err)

    def distribution(self, known_version: int = -1) -> CurriculumDistribution | None:
        """The current distribution, or None when its version equals `known_version`."""
        now = time.monotonic()
        distribution = self._published
        if distribution is None or now - self._published_at >= self.publish_every_seconds:
            distribution = self._published = self.scheduler.distribution()
            self._published_at = now
        return None if distribution.version == known_version else distribution

    def evaluation_due(self) -> bool:
        """With success_source="evaluation": whether the driver should run an evaluation round."""
        return self.scheduler.evaluation_due

    def metrics(self) -> dict[str, float]:
        """The scheduler's metrics plus the actor's own counters (under actor/)."""
        metrics = self.scheduler.metrics()
        metrics["actor/reports"] = float(self.reports)
        metrics["actor/rejected_reports"] = float(self.rejected_reports)
        metrics["actor/duplicate_reports"] = float(self.duplicate_reports)
        metrics["actor/senders"] = float(len(self.sequences.watermark))
        metrics["actor/checkpoints_saved"] = float(self.checkpoints_saved)
        metrics["actor/failed_checkpoints"] = float(self.failed_checkpoints)
        metrics["actor/restored"] = float(self.restored_from is not None)
        metrics["actor/update_seconds"] = self.update_seconds
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)
        self._published = None

    def save_checkpoint(self, path: str | None = None) -> str:
        """Write the scheduler state (pickle, atomically) to `path` or the checkpoint path; returns it."""
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None:
            raise ValueError("save_checkpoint: no path given and the actor has no checkpoint_path")
        # The batch numbers go in the same file as the state they produced: restored together,
        # a retried batch is either in both (duplicate) or in neither (absorbed again).
        payload = {"format": CHECKPOINT_FORMAT, "kind": self.scheduler.kind, "state": self.scheduler.state_dict(),
                   "sequences": self.sequences.state_dict()}
        _write_atomically(target, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        if path is None or target == self.checkpoint_path:
            self._reports_since_save = 0
            self._last_save = time.monotonic()
        self.checkpoints_saved += 1
        return str(target)

    def load_checkpoint(self, path: str) -> None:
        """Restore from a file written by `save_checkpoint`."""
        with open(path, "rb") as f:
            payload = pickle.load(f)
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a curriculum checkpoint (format {CHECKPOINT_FORMAT})")
        if payload["kind"] != self.scheduler.kind:
            log.warning("checkpoint %s was written by a %s curriculum; loading into %s", path, payload["kind"], self.scheduler.kind)
        self.scheduler.load_state_dict(payload["state"])
        self.sequences = RunnerSequences()
        self.sequences.load_state_dict(payload.get("sequences", {}))  # files older than numbering have none
        self.scheduler.skip_versions(VERSION_GAP_AFTER_RESTORE)
        self._published = None
        self.restored_from = str(path)


def start_curriculum_actor(
    scheduler: Curriculum | dict[str, Any],
    name: str = "curriculum",
    namespace: str | None = None,
    checkpoint_path: str | None = None,
    max_restarts: int = 3,
    checkpoint_every_reports: int = 100,
    checkpoint_every_seconds: float = 30.0,
    num_cpus: float = 0,
    crash_once_after_report: str | None = None,
    publish_every_seconds: float = 0.0,
) -> "ray.actor.ActorHandle":
    """Start the named CurriculumActor and wait until it is up (restored from `checkpoint_path` if present).

    Calls are retried across restarts (`max_task_retries=-1`), so a report sent
    while the actor restarts is applied once it is back. It needs no CPU of its
    own by default (`num_cpus=0`) so it never competes with EnvRunners for slots.
    """
    initial_state = None
    if isinstance(scheduler, Curriculum) and CURRICULUM_KINDS.get(scheduler.kind) is type(scheduler):
        # Ray keeps large constructor arguments in the object store, and restarting an
        # actor whose arguments were lost fails; the settings are small plain data.
        if scheduler.has_state:
            initial_state = scheduler.state_dict()
        scheduler = scheduler.config()
    remote_cls = ray.remote(CurriculumActor)
    handle = remote_cls.options(
        name=name,
        namespace=namespace,
        max_restarts=max_restarts,
        max_task_retries=-1 if max_restarts != 0 else 0,
        num_cpus=num_cpus,
    ).remote(scheduler, checkpoint_path, checkpoint_every_reports, checkpoint_every_seconds, initial_state,
             crash_once_after_report, publish_every_seconds)
    ray.get(handle.ready.remote())
    return handle


class ActorCurriculumClient:
    """`CurriculumClient` for the actor: never blocks in `report` or `poll`.

    Reports are sent fire-and-forget; at most `max_in_flight_reports` are
    outstanding, beyond that outcomes queue locally and go out joined with the
    next send. Every batch sent carries this client's runner id and the next
    sequence number, so the actor absorbs it at most once (a copy of the client
    in another process gets its own id). Finished report calls are checked with
    ``ray.wait(timeout=0)`` so a rejected batch surfaces here as an error
    instead of vanishing. `poll`
    keeps one distribution request in flight and returns its answer once ready.
    """

    def __init__(self, handle: "ray.actor.ActorHandle", max_in_flight_reports: int = 8) -> None:
        self.handle = handle
        self.max_in_flight_reports = int(max_in_flight_reports)
        self._reports: list[ray.ObjectRef] = []
        self._backlog: list[EpisodeOutcomes] = []
        self._distribution_ref: ray.ObjectRef | None = None
        self.runner_id = uuid.uuid4().hex
        self.sequence = 0

    @classmethod
    def from_name(cls, name: str = "curriculum", namespace: str | None = None, **kwargs: Any) -> "ActorCurriculumClient":
        """Look the actor up by name (how EnvRunners find it)."""
        return cls(ray.get_actor(name, namespace=namespace), **kwargs)

    def __reduce__(self):
        # In-flight references belong to this process; a copy starts clean.
        return (ActorCurriculumClient, (self.handle, self.max_in_flight_reports))

    def _reap(self) -> None:
        if not self._reports:
            return
        ready, self._reports = ray.wait(self._reports, num_returns=len(self._reports), timeout=0)
        for ref in ready:
            ray.get(ref)  # re-raises a rejection (ValueError) from the actor

    def report(self, outcomes: EpisodeOutcomes) -> None:
        self._reap()
        if len(self._reports) >= self.max_in_flight_reports:
            self._backlog.append(outcomes)
            return
        if self._backlog:
            self._backlog.append(outcomes)
            outcomes = EpisodeOutcomes.concat(self._backlog)
            self._backlog = []
        self._send(outcomes)

    def _send(self, outcomes: EpisodeOutcomes) -> None:
        self.sequence += 1
        self._reports.append(self.handle.report.remote(outcomes, self.runner_id, self.sequence))

    @property
    def awaiting_distribution(self) -> bool:
        """A distribution request is in flight (the wrapper then checks for its answer every step)."""
        return self._distribution_ref is not None

    def poll(self, known_version: int) -> CurriculumDistribution | None:
        """Send a request when none is in flight; return its answer once it has arrived (then no
        request is in flight until the next poll, so an answer is never a refresh interval old)."""
        ref = self._distribution_ref
        if ref is None:
            self._distribution_ref = self.handle.distribution.remote(known_version)
            return None
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return None
        self._distribution_ref = None
        result = ray.get(ref)
        return result if result is not None and result.version != known_version else None

    def fetch(self, known_version: int = -1, timeout_s: float = 10.0) -> CurriculumDistribution | None:
        """Blocking request (only for a wrapper's first copy); None on timeout."""
        try:
            return ray.get(self.handle.distribution.remote(known_version), timeout=timeout_s)
        except GetTimeoutError:
            log.warning("curriculum actor did not answer within %.1fs; sampling uniformly for now", timeout_s)
            return None

    def flush(self, timeout_s: float | None = 30.0) -> None:
        """Send queued outcomes and wait (up to `timeout_s`) until the actor has absorbed every report."""
        if self._backlog:
            outcomes = EpisodeOutcomes.concat(self._backlog)
            self._backlog = []
            self._send(outcomes)
        if self._reports:
            ray.wait(self._reports, num_returns=len(self._reports), timeout=timeout_s)
        self._reap()
