"""Techtree Simon Says: env-steps per second on one core, random-policy and scripted success.

    python -m benchmarks.env_speed [--steps 200] [--repeats 5] [--success-steps 3000] [--action-mask]

Pins the process to one CPU core and numpy/torch to one thread, then times
``SimonSaysVectorEnv.step`` with uniformly random actions at 1, 64, 1024 and 4096
parallel envs (observations copied out every step, as RLlib receives them). Also reports,
per task, the success rate of a uniformly random policy and the steps a scripted player
(``tasks.simon_says.scripted``) needs, which shows every task is reachable. ``--action-mask`` also times the env with
``action_mask=True`` (the invalid-action mask computed and copied out every step) against
the same env without it, replaying the same actions: uniformly random ones, and ones drawn
from the valid actions (a masked policy's case, where most actions change the inventory).
Prints tables and writes ``benchmarks/results/env_speed.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from tasks.simon_says import SimonSaysVectorEnv, make_task_space  # noqa: E402
from tasks.simon_says.scripted import steps_to_obtain  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "env_speed.json"
SIZES = (1, 64, 1024, 4096)


def pin_to_one_core() -> str:
    """Run on a single core with single-threaded math libraries; returns a description."""
    core = "unpinned"
    if hasattr(os, "sched_setaffinity"):
        first = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {first})
        core = f"core {first}"
    try:  # torch is a project dependency, but keep the benchmark usable without it
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    return core


def machine() -> dict[str, str]:
    """CPU model and library versions for the record."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "python": platform.python_version(), "numpy": np.__version__,
            "logical_cpus": str(os.cpu_count())}


def steps_per_second(num_envs: int, steps: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Env-steps/s over ``repeats`` timed runs of ``steps`` vector steps: median and best by
    wall clock, and median per second of this process's CPU time (robust to a shared machine)."""
    env = SimonSaysVectorEnv(num_envs=num_envs)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.single_action_space.n, size=(steps, num_envs))
    for a in actions[: min(steps, 20)]:  # warm-up: caches, allocator
        env.step(a)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for a in actions:
            env.step(a)
        wall.append(steps * num_envs / (time.perf_counter() - start))
        cpu.append(steps * num_envs / max(time.process_time() - start_cpu, 1e-9))
    return {"median": statistics.median(wall), "best": max(wall), "cpu_time_median": statistics.median(cpu)}


def valid_actions(num_envs: int, steps: int, seed: int = 0) -> np.ndarray:
    """``[steps, num_envs]`` actions drawn uniformly from the valid ones along one trajectory
    (a masked policy's case: most actions then change the inventory)."""
    env = SimonSaysVectorEnv(num_envs=num_envs, action_mask=True)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = np.empty((steps, num_envs), dtype=np.int64)
    for t in range(steps):
        actions[t] = (obs["action_mask"] * rng.random(obs["action_mask"].shape, dtype=np.float32)).argmax(axis=1)
        obs, *_ = env.step(actions[t])
    return actions


def replay_steps_per_second(actions: np.ndarray, repeats: int, action_mask: bool, seed: int = 0,
                            warmup: int = 20) -> dict[str, float]:
    """Env-steps/s replaying ``actions`` from ``reset(seed)`` (the first ``warmup`` steps untimed),
    so the mask's cost on one trajectory is timed with and without it."""
    steps, num_envs = actions.shape
    env = SimonSaysVectorEnv(num_envs=num_envs, action_mask=action_mask)
    timed = steps - warmup
    wall, cpu = [], []
    for _ in range(repeats):
        env.reset(seed=seed)
        for a in actions[:warmup]:
            env.step(a)
        start, start_cpu = time.perf_counter(), time.process_time()
        for a in actions[warmup:]:
            env.step(a)
        wall.append(timed * num_envs / (time.perf_counter() - start))
        cpu.append(timed * num_envs / max(time.process_time() - start_cpu, 1e-9))
    return {"median": statistics.median(wall), "best": max(wall), "cpu_time_median": statistics.median(cpu)}


def random_policy_success(num_envs: int, steps: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per task: episodes and success rate of uniformly random actions (uniform task sampling)."""
    env = SimonSaysVectorEnv(num_envs=num_envs)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed + 1)
    k = len(env.task_space)
    episodes, successes = np.zeros(k), np.zeros(k)
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(rng.integers(0, env.single_action_space.n, size=num_envs))
        done = terminated | truncated
        np.add.at(episodes, info["task"][done], 1)
        np.add.at(successes, info["task"][done & info["success"]], 1)
    return {name: {"episodes": int(episodes[i]), "success_rate": float(successes[i] / max(episodes[i], 1))}
            for i, name in enumerate(env.task_space.names)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="vector steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size")
    parser.add_argument("--success-envs", type=int, default=4096)
    parser.add_argument("--success-steps", type=int, default=3000, help="vector steps for the random-policy table")
    parser.add_argument("--scripted-max-steps", type=int, default=5000)
    parser.add_argument("--action-mask", action="store_true",
                        help="also time the env with action_mask=True against it off")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    core = pin_to_one_core()
    space = make_task_space()
    print(f"Simon Says techtree: {len(space)} tasks (obtainable items), max depth {max(space.depth)}; {core}")

    speed = {}
    print(f"\n{'envs':>6} {'median steps/s':>16} {'best steps/s':>14} {'per CPU-second':>16}")
    for n in SIZES:
        steps = max(args.steps, 2000 // n)  # enough steps at one env to be measurable
        speed[n] = steps_per_second(n, steps, args.repeats)
        print(f"{n:>6} {speed[n]['median']:>16,.0f} {speed[n]['best']:>14,.0f} {speed[n]['cpu_time_median']:>16,.0f}")

    mask_speed: dict[str, dict[int, dict[str, float]]] = {}
    if args.action_mask:
        print("\naction_mask=True vs off, per CPU-second (median); random: uniform over all actions, "
              "valid: uniform over the valid ones, same trajectory replayed with and without the mask")
        print(f"{'envs':>6} {'random, off':>13} {'random, mask':>13} {'ratio':>6} "
              f"{'valid, off':>13} {'valid, mask':>13} {'ratio':>6}")
        mask_speed = {"random_off": {}, "random_mask": {}, "valid_off": {}, "valid_mask": {}}
        num_actions = SimonSaysVectorEnv(num_envs=1).single_action_space.n
        for n in SIZES:
            steps = max(args.steps, 2000 // n)
            for policy, actions in (("random", np.random.default_rng(0).integers(0, num_actions, size=(steps + 20, n))),
                                    ("valid", valid_actions(n, steps + 20))):
                for on in (False, True):
                    key = f"{policy}_{'mask' if on else 'off'}"
                    mask_speed[key][n] = replay_steps_per_second(actions, args.repeats, action_mask=on)
            c = {k: v[n]["cpu_time_median"] for k, v in mask_speed.items()}
            print(f"{n:>6} {c['random_off']:>13,.0f} {c['random_mask']:>13,.0f} {c['random_mask'] / c['random_off']:>6.2f} "
                  f"{c['valid_off']:>13,.0f} {c['valid_mask']:>13,.0f} {c['valid_mask'] / c['valid_off']:>6.2f}")

    random = random_policy_success(args.success_envs, args.success_steps)
    scripted = {name: steps_to_obtain(name, seed=0, max_steps=args.scripted_max_steps) for name in space.names}
    print(f"\n{'task':<32} {'depth':>5} {'random success':>15} {'episodes':>9} {'scripted steps':>15}")
    for name, depth in zip(space.names, space.depth):
        r = random[name]
        s = scripted[name]
        print(f"{name:<32} {depth:>5} {r['success_rate']:>15.3f} {r['episodes']:>9} {str(s):>15}")
    reachable = sum(v is not None for v in scripted.values())
    solved = sum(v["success_rate"] > 0 for v in random.values())
    print(f"\nscripted player reaches {reachable}/{len(space)} tasks; random policy succeeds at least once on "
          f"{solved}/{len(space)}")

    result = {
        "machine": machine(), "pinned": core, "load_average": list(os.getloadavg()), "num_tasks": len(space),
        "steps_per_second": {str(n): v for n, v in speed.items()},
        **({"action_mask_steps_per_second": {k: {str(n): v for n, v in d.items()} for k, d in mask_speed.items()}}
           if mask_speed else {}),
        "random_policy": {"horizon": 300, "vector_steps": args.success_steps, "num_envs": args.success_envs,
                          "per_task": random},
        "scripted_steps": scripted,
        "depth": dict(zip(space.names, space.depth)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
