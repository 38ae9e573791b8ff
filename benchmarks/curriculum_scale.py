"""The CurriculumActor under 64 / 256 / 1,024 simulated EnvRunners.

Each simulated EnvRunner is the real env-side half of the curriculum: one
`_CurriculumLink` (what `CurriculumVectorWrapper` runs inside an EnvRunner) with
its own `ActorCurriculumClient`, so batches are numbered, sent fire-and-forget
every `report_every_episodes`, and the distribution is polled every
`refresh_every_episodes` or `refresh_every_seconds` exactly as in a run. A few
real Ray actors (`RunnerHost`) each drive many such runners in real time at
`--episodes-per-second` per runner; only the environment is simulated.

Per point it measures:
- outcomes absorbed/s by the one CurriculumActor (and the share of a core the actor is busy);
- staleness of every runner's copy, sampled every 0.5 s: versions published since the one
  it holds, and seconds since a newer one was published;
- the added cost per training iteration: the runner-side time inside the curriculum link
  (sending, polling, installing; a share of each runner's wall time, which stretches the
  iteration by the same share), plus the driver's per-iteration `metrics()` round trip,
  against an iteration of `--iteration-seconds` (15 s: the baseline of ray-project/ray#41894,
  whose curriculum hook added ~4 s at 50 EnvRunners and ~40 s at 500).

    python -m benchmarks.curriculum_scale [--runners 64 256 1024] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.rl.curriculum_actor import ActorCurriculumClient, CurriculumActor

RESULTS = Path(__file__).resolve().parent / "results"
RAY_41894 = {"baseline_iteration_s": 15.0, "added_s": {50: 4.0, 500: 40.0}}  # ray-project/ray#41894
TARGET = {"added_share_at_1024": 0.01, "max_versions_behind": 2}
NAMESPACE = "mto-curriculum-scale"


class PublishLogCurriculumActor(CurriculumActor):
    """The CurriculumActor, plus a log of when each version was first published (wall clock;
    the simulated runners run on the same machine) and its own CPU time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.publish_log: list[tuple[int, float]] = []

    def distribution(self, known_version: int = -1):
        answer = super().distribution(known_version)
        version = self._published.version
        if not self.publish_log or self.publish_log[-1][0] != version:
            self.publish_log.append((version, time.time()))
        return answer

    def published(self) -> list[tuple[int, float]]:
        return self.publish_log

    def cpu_seconds(self) -> float:
        return time.process_time()


class RunnerHost:
    """Drives `num_runners` simulated EnvRunners (a link + client each) in one process."""

    def __init__(self, actor_name: str, num_runners: int, num_tasks: int, episodes_per_second: float,
                 report_every_episodes: int, refresh_every_episodes: int, refresh_every_seconds: float, seed: int) -> None:
        import ray

        from orchestrator.rl.curriculum_wrapper import _CurriculumLink

        handle = ray.get_actor(actor_name, namespace=NAMESPACE)
        self.rng = np.random.default_rng(seed)
        self.num_tasks = num_tasks
        self.rate = float(episodes_per_second)
        self.links = [
            _CurriculumLink(ActorCurriculumClient(handle), num_tasks, num_tasks, 0.0, refresh_every_episodes, refresh_every_seconds,
                            report_every_episodes, 10.0, False, 0.0)
            for _ in range(num_runners)
        ]
        # (the scheduler of curriculum_overhead has one item per task, for its bonus set)
        # Runners start at different moments, so their sends and refreshes do not line up.
        self.owed = self.rng.random(num_runners) * report_every_episodes

    def run(self, seconds: float, warmup_s: float, tick_s: float = 0.1, sample_every_s: float = 0.5) -> dict[str, Any]:
        n = len(self.links)
        sent = 0
        link_seconds = 0.0
        samples_t: list[float] = []
        samples_v: list[np.ndarray] = []
        start = last = time.monotonic()
        next_sample = start + warmup_s
        overruns = 0
        while (now := time.monotonic()) - start < seconds:
            dt, last = now - last, now
            self.owed += self.rate * dt
            due = np.floor(self.owed).astype(np.int64)
            self.owed -= due
            t0 = time.perf_counter()
            for link, k in zip(self.links, due):
                if k:
                    task = self.rng.integers(0, self.num_tasks, k)
                    success = self.rng.random(k) < 0.3
                    link.finished(task, success, success.astype(np.float64), np.full(k, 100, np.int64), None)
                    sent += int(k)
                link.tick()
            link_seconds += time.perf_counter() - t0
            if now >= next_sample:
                samples_t.append(time.time())
                samples_v.append(np.array([link.version for link in self.links], np.int64))
                next_sample += sample_every_s
            spare = tick_s - (time.monotonic() - now)
            if spare > 0:
                time.sleep(spare)
            else:
                overruns += 1
        elapsed = time.monotonic() - start
        t0 = time.perf_counter()
        for link in self.links:
            link.flush()
            link.client.flush(timeout_s=120)
        flush_s = time.perf_counter() - t0
        return {"runners": n, "sent": sent, "elapsed_s": elapsed, "link_seconds": link_seconds, "overruns": overruns,
                "flush_s": flush_s, "samples_t": samples_t, "samples_v": [v.tolist() for v in samples_v],
                "refreshes": int(sum(link.refreshes for link in self.links))}


def staleness(samples_t: list[float], samples_v: list[list[int]], log: list[tuple[int, float]]) -> dict[str, float]:
    """Versions published since (and seconds since the first newer version than) each runner's copy."""
    versions = np.array([v for v, _ in log], np.int64)
    times = np.array([t for _, t in log])
    behind, seconds = [], []
    for t, held in zip(samples_t, samples_v):
        held = np.asarray(held)
        published_by_t = np.searchsorted(times, t, side="right")
        first_newer = np.searchsorted(versions, held, side="right")
        behind.append(np.maximum(published_by_t - first_newer, 0))
        newer_exists = first_newer < published_by_t
        seconds.append(np.where(newer_exists, t - times[np.minimum(first_newer, len(times) - 1)], 0.0))
    behind_all, seconds_all = np.concatenate(behind), np.concatenate(seconds)
    return {
        "versions_behind_max": int(behind_all.max()), "versions_behind_p99": float(np.percentile(behind_all, 99)),
        "versions_behind_mean": float(behind_all.mean()),
        "seconds_behind_max": float(seconds_all.max()), "seconds_behind_p99": float(np.percentile(seconds_all, 99)),
        "seconds_behind_mean": float(seconds_all.mean()), "samples": int(behind_all.size),
    }


def run_point(num_runners: int, hosts: int, args: argparse.Namespace, publish_every_s: float) -> dict[str, Any]:
    import ray

    from benchmarks.curriculum_overhead import scheduler

    name = f"curriculum-scale-{uuid.uuid4().hex[:8]}"
    ckpt = Path(tempfile.mkdtemp(prefix="curriculum-scale-")) / "curriculum.pkl"
    actor_cls = ray.remote(PublishLogCurriculumActor)
    actor = actor_cls.options(name=name, namespace=NAMESPACE, max_restarts=1, max_task_retries=-1, num_cpus=0).remote(
        scheduler(args.tasks).config(), str(ckpt), 100, 30.0, None, None, publish_every_s)
    ray.get(actor.ready.remote())
    host_cls = ray.remote(num_cpus=0)(RunnerHost)
    per_host = [num_runners // hosts + (i < num_runners % hosts) for i in range(hosts)]
    runner_hosts = [host_cls.remote(name, k, args.tasks, args.episodes_per_second, args.report_every_episodes,
                                    args.refresh_every_episodes, args.refresh_every_seconds, i) for i, k in enumerate(per_host)]
    try:
        ray.get([h.__ray_ready__.remote() for h in runner_hosts])
        base = ray.get(actor.metrics.remote())
        cpu0 = ray.get(actor.cpu_seconds.remote())
        t0 = time.monotonic()
        runs = [h.run.remote(args.seconds, args.warmup) for h in runner_hosts]
        # The driver's own per-iteration call, under load: one metrics() round trip a second.
        metrics_ms = []
        while ray.wait(runs, num_returns=len(runs), timeout=1.0)[1]:
            s = time.perf_counter()
            ray.get(actor.metrics.remote())
            metrics_ms.append((time.perf_counter() - s) * 1e3)
        results = ray.get(runs)
        wall = time.monotonic() - t0
        cpu = ray.get(actor.cpu_seconds.remote()) - cpu0
        final = ray.get(actor.metrics.remote())
        s = time.perf_counter()
        ray.get(actor.save_checkpoint.remote())
        save_ms = (time.perf_counter() - s) * 1e3
        log = ray.get(actor.published.remote())
    finally:
        for h in runner_hosts:
            ray.kill(h)
        ray.kill(actor, no_restart=True)
    sent = sum(r["sent"] for r in results)
    absorbed = final["episodes_total"] - base["episodes_total"]
    elapsed = max(r["elapsed_s"] for r in results)
    link_share = sum(r["link_seconds"] for r in results) / sum(r["runners"] * r["elapsed_s"] for r in results)
    stale = staleness(sum((r["samples_t"] for r in results), []), sum((r["samples_v"] for r in results), []), log)
    metrics_p50 = float(np.median(metrics_ms)) if metrics_ms else float("nan")
    added_s = link_share * args.iteration_seconds + metrics_p50 / 1e3
    return {
        "runners": num_runners, "hosts": hosts, "publish_every_seconds": publish_every_s,
        "offered_outcomes_per_second": num_runners * args.episodes_per_second,
        "sent": sent, "absorbed": int(absorbed), "lost": int(sent - absorbed),
        "sent_per_second": sent / elapsed, "absorbed_per_second": absorbed / elapsed, "reports": int(final["actor/reports"] - base["actor/reports"]),
        "mean_batch": absorbed / max(1.0, final["actor/reports"] - base["actor/reports"]),
        "actor_busy_share": cpu / wall, "actor_update_seconds": final["actor/update_seconds"] - base["actor/update_seconds"],
        "versions_published": len(log), "published_per_second": len(log) / wall,
        **stale,
        "runner_link_share": link_share, "driver_metrics_ms_p50": metrics_p50,
        "driver_metrics_ms_max": float(max(metrics_ms)) if metrics_ms else float("nan"),
        "checkpoint_save_ms": save_ms, "flush_s_max": max(r["flush_s"] for r in results),
        "host_tick_overruns": sum(r["overruns"] for r in results), "elapsed_s": elapsed,
        "added_s_per_iteration": added_s, "added_share_of_iteration": added_s / args.iteration_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--hosts", type=int, default=4, help="Ray actors that drive the simulated runners")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15.0, help="run time per point")
    parser.add_argument("--warmup", type=float, default=3.0, help="staleness is sampled after this long")
    parser.add_argument("--episodes-per-second", type=float, default=20.0, help="per simulated runner")
    parser.add_argument("--report-every-episodes", type=int, default=32)
    parser.add_argument("--refresh-every-episodes", type=int, default=64)
    parser.add_argument("--refresh-every-seconds", type=float, default=2.5)
    parser.add_argument("--publish-every-seconds", type=float, nargs="+", default=[0.0, 2.5],
                        help="the actor's publish cadence(s) to compare (0 = on every request after new outcomes)")
    parser.add_argument("--iteration-seconds", type=float, default=RAY_41894["baseline_iteration_s"])
    parser.add_argument("--num-cpus", type=int, default=min(os.cpu_count() or 2, 16))
    parser.add_argument("--out", default=str(RESULTS / "curriculum_scale.json"))
    args = parser.parse_args()
    if min(args.runners) < 1 or args.hosts < 1 or args.seconds <= args.warmup:
        parser.error("--runners and --hosts must be >= 1 and --seconds greater than --warmup")

    import ray

    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR")
    rows = []
    try:
        for publish in args.publish_every_seconds:
            for runners in args.runners:
                rows.append(run_point(runners, min(args.hosts, runners), args, publish))
                r = rows[-1]
                print(f"  {runners} runners, publish {publish}s: {r['absorbed_per_second']:,.0f} outcomes/s, "
                      f"{r['versions_behind_max']} versions behind max", flush=True)
    finally:
        ray.shutdown()

    load = os.getloadavg()
    print(f"CurriculumActor at scale: {args.tasks} tasks, {args.episodes_per_second:g} episodes/s per runner, batches of "
          f"{args.report_every_episodes}, refresh every {args.refresh_every_episodes} episodes or "
          f"{args.refresh_every_seconds:g}s; {platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.2f}")
    head = (f"{'runners':>7} {'publish s':>9} {'offered/s':>10} {'absorbed/s':>11} {'lost':>5} {'actor busy':>10} "
            f"{'vers behind max/p99':>19} {'s behind max/p99':>17} {'runner share':>12} {'metrics ms':>10} "
            f"{'added s/iter':>12} {'% of iter':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['runners']:>7} {r['publish_every_seconds']:>9g} {r['offered_outcomes_per_second']:>10,.0f} "
              f"{r['absorbed_per_second']:>11,.0f} {r['lost']:>5} {r['actor_busy_share']:>10.1%} "
              f"{r['versions_behind_max']:>9}/{r['versions_behind_p99']:<9.0f} {r['seconds_behind_max']:>8.2f}/{r['seconds_behind_p99']:<8.2f} "
              f"{r['runner_link_share']:>12.4%} {r['driver_metrics_ms_p50']:>10.2f} {r['added_s_per_iteration']:>12.4f} "
              f"{r['added_share_of_iteration']:>9.3%}")
    print(f"ray-project/ray#41894 (RLlib curriculum hook): +{RAY_41894['added_s'][50]:g} s/iteration at 50 EnvRunners, "
          f"+{RAY_41894['added_s'][500]:g} s at 500, on a {RAY_41894['baseline_iteration_s']:g} s iteration")
    result = {"benchmark": "curriculum_scale", "settings": vars(args), "cpus": os.cpu_count(), "load_average": load,
              "rows": rows, "ray_41894": RAY_41894, "target": TARGET}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
