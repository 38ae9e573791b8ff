"""What the curriculum costs: outcomes absorbed per second, distribution recompute, per-reset sampling.

Setting: 1,000 tasks, a learning-progress scheduler with the dynamic exploration
bonus, 64 simulated environment workers. Four figures:

1. outcomes/s absorbed by the real `CurriculumActor` on a local Ray: 64
   `ActorCurriculumClient`s (one per simulated worker, all in this driver
   process) send batches fire-and-forget; we time until the actor has absorbed
   everything (end to end, Ray transport included) and also report the actor's
   own time inside `update` (the absorb rate without transport);
2. outcomes/s of `scheduler.update` in-process, by batch size;
3. time to recompute the distribution for 1,000 tasks (LP, sampling rule, bonus set);
4. per-reset cost of the wrapper's task sampler (what the env calls at a reset),
   and, when tasks.simon_says is importable, the wrapper's overhead per env step.

Targets (issue 3): >= 1,000,000 outcomes/s, <= 0.1 ms recompute, <= 2 us per reset.

    python -m benchmarks.curriculum_overhead [--tasks 1000] [--workers 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from curricula import EpisodeOutcomes, build_curriculum
from orchestrator.rl.curriculum_wrapper import LocalTaskSampler

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = {  # the best-known curriculum library, in-process, 1,000 tasks, same machines (issue 3)
    "outcomes_per_second": 460_000,
    "recompute_ms": 0.15,
    "sample_us_per_reset": 45.0,
}
TARGET = {"outcomes_per_second": 1_000_000, "recompute_ms": 0.1, "sample_us_per_reset": 2.0}


def make_outcomes(rng: np.random.Generator, num_tasks: int, n: int, num_items: int | None = None) -> EpisodeOutcomes:
    items = None if num_items is None else rng.random((n, num_items)) < 0.02
    return EpisodeOutcomes(
        task=rng.integers(0, num_tasks, n),
        success=rng.random(n) < 0.3,
        episode_return=rng.random(n),
        length=rng.integers(1, 300, n),
        items_obtained=items,
    )


def scheduler(num_tasks: int):
    names = [f"task_{i:04d}" for i in range(num_tasks)]
    return build_curriculum("learning_progress", names, names, bonus={"mode": "dynamic", "threshold": 0.5})


def bench_in_process(num_tasks: int, batch_sizes: list[int], total: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for batch in batch_sizes:
        for with_items in (False, True):
            if with_items and batch != 4096:
                continue
            cur = scheduler(num_tasks)
            data = [make_outcomes(rng, num_tasks, batch, num_tasks if with_items else None) for _ in range(8)]
            cur.update(data[0])
            reps = max(1, total // batch)
            t0 = time.perf_counter()
            for i in range(reps):
                cur.update(data[i % 8])
            seconds = time.perf_counter() - t0
            rows.append({
                "batch": batch,
                "items_obtained": with_items,
                "outcomes_per_second": reps * batch / seconds,
            })
    return rows


def bench_recompute(num_tasks: int, reps: int = 3000) -> dict:
    rng = np.random.default_rng(1)
    cur = scheduler(num_tasks)
    cur.update(make_outcomes(rng, num_tasks, 200_000))
    times = []
    for _ in range(reps):
        cur._dirty = True  # force the recompute that follows an update
        t0 = time.perf_counter()
        cur.distribution()
        times.append(time.perf_counter() - t0)
    return {
        "median_ms": statistics.median(times) * 1e3,
        "p90_ms": float(np.percentile(times, 90) * 1e3),
        "num_active_tasks": int(np.count_nonzero(cur.distribution().probabilities)),
    }


def bench_sampler(num_tasks: int) -> list[dict]:
    rng = np.random.default_rng(2)
    cur = scheduler(num_tasks)
    cur.update(make_outcomes(rng, num_tasks, 200_000))
    sampler = LocalTaskSampler(cur.distribution())
    rows = []
    for per_call in (1, 8, 64):
        calls = 200_000 // per_call
        t0 = time.perf_counter()
        for _ in range(calls):
            sampler(per_call, rng)
        seconds = time.perf_counter() - t0
        rows.append({"resets_per_call": per_call, "us_per_reset": seconds / (calls * per_call) * 1e6})
    # Unbuffered draw (one searchsorted per call) for comparison.
    t0 = time.perf_counter()
    for _ in range(50_000):
        sampler.sample(1, rng)
    rows.append({"resets_per_call": 1, "unbuffered": True, "us_per_reset": (time.perf_counter() - t0) / 50_000 * 1e6})
    return rows


def bench_wrapper_step(num_envs: int = 64, steps: int = 300, repeats: int = 7) -> dict | None:
    try:
        import gymnasium as gym

        import tasks.simon_says as simon_says
        from curricula import LearningProgressCurriculum
        from orchestrator.rl.curriculum_wrapper import CurriculumVectorWrapper, LocalCurriculumClient
    except ImportError:  # the Simon Says env is optional here
        return None

    def timed(env) -> float:
        env.reset(seed=0)
        actions = np.random.default_rng(0).integers(0, env.single_action_space.n, (steps, num_envs))
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        return (time.perf_counter() - t0) / (steps * num_envs)

    make = lambda: gym.make_vec(simon_says.ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", horizon=50)
    try:
        raw_env = make()
    except ImportError:  # e.g. minecraft-data missing on a bare machine
        return None
    base = make()
    cur = LearningProgressCurriculum(list(base.unwrapped.task_space.names), list(base.unwrapped.item_names), bonus="dynamic")
    wrapped = CurriculumVectorWrapper(base, LocalCurriculumClient(cur), bonus_size=0.1, report_every_episodes=64,
                                      refresh_every_episodes=64)
    # Alternate and keep the best of each: other processes share these CPUs.
    raw, wrapped_time = float("inf"), float("inf")
    for _ in range(repeats):
        raw = min(raw, timed(raw_env))
        wrapped_time = min(wrapped_time, timed(wrapped))
    return {
        "num_envs": num_envs,
        "raw_us_per_env_step": raw * 1e6,
        "wrapped_us_per_env_step": wrapped_time * 1e6,
        "overhead_us_per_env_step": (wrapped_time - raw) * 1e6,
        "episodes_reported": int(cur.episodes.sum()),
        "repeats": repeats,
    }


class ReplayVectorEnv:
    """A task-family VectorEnv that replays precomputed steps, so timing it measures the wrapper.

    Episodes last `horizon` steps (staggered across envs), 1 % of steps obtain a new
    item, goals succeed at the end of a third of the episodes; NEXT_STEP autoreset,
    and the task sampler is called once per autoreset batch like the real env.
    """

    def __init__(self, num_envs: int, num_tasks: int, num_items: int, horizon: int = 50, steps: int = 500):
        import gymnasium as gym
        from gymnasium.vector import AutoresetMode

        class _Env(gym.vector.VectorEnv):
            metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

        self.env = _Env()
        env = self.env
        env.num_envs = num_envs
        env.task_space = [f"task_{i}" for i in range(num_tasks)]
        env.item_names = tuple(f"item_{i}" for i in range(num_items))
        env.single_observation_space = gym.spaces.Box(0, 1, (8,), np.float32)
        env.single_action_space = gym.spaces.Discrete(4)
        env.observation_space = gym.vector.utils.batch_space(env.single_observation_space, num_envs)
        env.action_space = gym.vector.utils.batch_space(env.single_action_space, num_envs)
        rng = np.random.default_rng(0)
        t = (np.arange(steps)[:, None] + np.arange(num_envs)[None, :]) % (horizon + 1)
        self.done = t == horizon
        self.resetting = np.roll(self.done, 1, axis=0)
        self.success = self.done & (rng.random(self.done.shape) < 0.33)
        self.items = rng.random((steps, num_envs, num_items)) < 0.01
        self.items[self.resetting] = False
        self.obs = np.zeros((num_envs, 8), np.float32)
        self.task = np.zeros(num_envs, np.int64)
        self.step_index = 0
        env._sampler = lambda k, g: g.integers(0, num_tasks, k)
        env.set_task_sampler = lambda fn: setattr(env, "_sampler", fn)
        env.reset = self.reset
        env.step = self.step
        env.rng = rng

    def reset(self, *, seed=None, options=None):
        self.step_index = 0
        self.task[:] = self.env._sampler(self.env.num_envs, self.env.rng)
        return self.obs, {"task": self.task.copy(), "success": np.zeros(self.env.num_envs, bool),
                          "items_obtained": np.zeros_like(self.items[0])}

    def step(self, actions):
        i = self.step_index % self.done.shape[0]
        self.step_index += 1
        resetting = self.resetting[i]
        if resetting.any():
            self.task[resetting] = self.env._sampler(int(resetting.sum()), self.env.rng)
        success = self.success[i]
        return (self.obs, success.astype(np.float64), success, self.done[i] & ~success,
                {"task": self.task.copy(), "success": success, "items_obtained": self.items[i]})


def bench_wrapper_replay(num_tasks: int, num_envs: int = 64, num_items: int = 184, steps: int = 2000) -> dict:
    from curricula import LearningProgressCurriculum
    from orchestrator.rl.curriculum_wrapper import CurriculumVectorWrapper, LocalCurriculumClient

    def timed(env) -> float:
        env.reset(seed=0)
        actions = np.zeros(num_envs, np.int64)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(steps):
                env.step(actions)
            best = min(best, time.perf_counter() - t0)
        return best / (steps * num_envs)

    raw = ReplayVectorEnv(num_envs, num_tasks, num_items)
    raw_time = timed(raw.env)
    replay = ReplayVectorEnv(num_envs, num_tasks, num_items)
    names = replay.env.task_space
    cur = LearningProgressCurriculum(names, list(names) + [f"extra_{i}" for i in range(num_items - len(names))]
                                     if num_items > len(names) else names[:num_items], bonus="dynamic")
    wrapped = CurriculumVectorWrapper(replay.env, LocalCurriculumClient(cur), bonus_size=0.1,
                                      report_every_episodes=64, refresh_every_episodes=64)
    wrapped_time = timed(wrapped)
    return {
        "num_envs": num_envs,
        "num_items": num_items,
        "episode_length": 50,
        "replay_us_per_env_step": raw_time * 1e6,
        "wrapped_us_per_env_step": wrapped_time * 1e6,
        "wrapper_us_per_env_step": (wrapped_time - raw_time) * 1e6,
        "episodes_reported": int(cur.episodes.sum()),
    }


def bench_actor(num_tasks: int, workers: int, batch: int, reports_per_worker: int) -> dict:
    import ray

    from orchestrator.rl.curriculum_actor import ActorCurriculumClient, start_curriculum_actor

    rng = np.random.default_rng(3)
    handle = start_curriculum_actor(scheduler(num_tasks), name=f"overhead-{batch}")
    try:
        clients = [ActorCurriculumClient(handle) for _ in range(workers)]
        batches = [make_outcomes(rng, num_tasks, batch) for _ in range(16)]
        ray.get(handle.report.remote(batches[0]))  # warm up the path
        base = ray.get(handle.metrics.remote())
        t0 = time.perf_counter()
        for r in range(reports_per_worker):
            for w, client in enumerate(clients):
                client.report(batches[(r * workers + w) % 16])
        for client in clients:
            client.flush()
        seconds = time.perf_counter() - t0
        metrics = ray.get(handle.metrics.remote())
        absorbed = metrics["episodes_total"] - base["episodes_total"]
        update_seconds = metrics["actor/update_seconds"] - base["actor/update_seconds"]
        t1 = time.perf_counter()
        for _ in range(200):
            ray.get(handle.distribution.remote(-1))
        pull_ms = (time.perf_counter() - t1) / 200 * 1e3
        return {
            "workers": workers,
            "batch": batch,
            "outcomes": int(absorbed),
            "end_to_end_outcomes_per_second": absorbed / seconds,
            "actor_update_outcomes_per_second": absorbed / update_seconds,
            "distribution_pull_ms": pull_ms,
        }
    finally:
        ray.kill(handle, no_restart=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--actor-batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--outcomes", type=int, default=2_000_000, help="outcomes per in-process measurement")
    parser.add_argument("--no-ray", action="store_true", help="skip the actor measurement")
    parser.add_argument("--out", default=str(RESULTS / "curriculum_overhead.json"))
    args = parser.parse_args()

    in_process = bench_in_process(args.tasks, [256, 1024, 4096, 65536], args.outcomes)
    recompute = bench_recompute(args.tasks)
    sampler = bench_sampler(args.tasks)
    wrapper = bench_wrapper_step()
    replay = bench_wrapper_replay(args.tasks)
    actor_rows = []
    if not args.no_ray:
        import ray

        from orchestrator.runs.local_ray import secure_local_ray

        secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            for batch in args.actor_batches:
                per_worker = max(2, min(40, 2_000_000 // (batch * args.workers)))
                actor_rows.append(bench_actor(args.tasks, args.workers, batch, per_worker))
        finally:
            ray.shutdown()

    best_actor = max((r["end_to_end_outcomes_per_second"] for r in actor_rows), default=float("nan"))
    best_reset = min(r["us_per_reset"] for r in sampler if not r.get("unbuffered"))
    print(f"Curriculum overhead: {args.tasks} tasks, {args.workers} simulated workers, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'figure':<58} {'measured':>14} {'target':>12} {'reference lib':>14}")
    print("-" * 101)
    for r in actor_rows:
        print(f"{'actor: outcomes/s end to end, batch ' + str(r['batch']):<58} {r['end_to_end_outcomes_per_second']:>14,.0f} {TARGET['outcomes_per_second']:>12,} {REFERENCE['outcomes_per_second']:>14,}")
        print(f"{'actor: outcomes/s inside update, batch ' + str(r['batch']):<58} {r['actor_update_outcomes_per_second']:>14,.0f}")
    for r in in_process:
        label = f"in-process update outcomes/s, batch {r['batch']}" + (" (+items)" if r["items_obtained"] else "")
        print(f"{label:<58} {r['outcomes_per_second']:>14,.0f} {TARGET['outcomes_per_second']:>12,} {REFERENCE['outcomes_per_second']:>14,}")
    print(f"{'recompute distribution (median ms)':<58} {recompute['median_ms']:>14.4f} {TARGET['recompute_ms']:>12} {REFERENCE['recompute_ms']:>14}")
    print(f"{'recompute distribution (p90 ms)':<58} {recompute['p90_ms']:>14.4f}")
    for r in sampler:
        label = f"sample per reset (us), {r['resets_per_call']} reset(s) per call" + (", unbuffered" if r.get("unbuffered") else "")
        print(f"{label:<58} {r['us_per_reset']:>14.3f} {TARGET['sample_us_per_reset']:>12} {REFERENCE['sample_us_per_reset']:>14}")
    if actor_rows:
        print(f"{'distribution pull from the actor (ms, blocking round trip)':<58} {actor_rows[-1]['distribution_pull_ms']:>14.3f}")
    print(f"{'wrapper cost per env step (us; 64 envs, replayed steps)':<58} {replay['wrapper_us_per_env_step']:>14.3f}")
    if wrapper:
        print(f"{'Simon Says vector env: raw us per env step':<58} {wrapper['raw_us_per_env_step']:>14.3f}")
        print(f"{'  with CurriculumVectorWrapper: us per env step':<58} {wrapper['wrapped_us_per_env_step']:>14.3f}")
    result = {
        "benchmark": "curriculum_overhead",
        "tasks": args.tasks,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "actor": actor_rows,
        "in_process_update": in_process,
        "recompute": recompute,
        "sampler": sampler,
        "wrapper_step_simon_says": wrapper,
        "wrapper_step_replay": replay,
        "targets": TARGET,
        "reference_library": REFERENCE,
        "summary": {
            "actor_outcomes_per_second": best_actor,
            "recompute_ms": recompute["median_ms"],
            "sample_us_per_reset": best_reset,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
