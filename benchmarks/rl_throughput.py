"""Env-steps/s of RLlib PPO training: the quickstart's settings before and after issue 13, as a
ratio to bare env stepping (default), or the curriculum wrapper's cost (``--mode curriculum``).

`--mode settings`: PPO algorithms for each arm are built side by side on one local Ray and
trained in alternation (A, B, C, A, B, C, ...), so machine noise hits every arm alike; bare
vector-env stepping (random valid actions, same env settings) is measured in the same run.
`--mode curriculum`: the same PPO with and without the curriculum wrapper + actor; the
overhead is the ratio of their median throughputs.

    python -m benchmarks.rl_throughput [--mode settings|curriculum] [--iterations 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


REPO = Path(__file__).resolve().parent.parent
# The quickstart's rl: settings before issue 13 (RLlib's default connectors, one EnvRunner actor).
BEFORE = ["task.action_mask=false", "bonus.scope=all_items", "rl.num_env_runners=1", "rl.lean_connectors=false",
          "rl.learner_threads=null", "rl.num_envs_per_env_runner=64", "rl.train_batch_size=4096",
          "rl.minibatch_size=512", "rl.num_epochs=3"]
SETTINGS_ARMS = {
    "before: RLlib default connectors, 1 EnvRunner, 4k batch, 3 epochs": BEFORE,
    "after, action mask off": ["task.action_mask=false"],
    "after: quickstart.yaml as shipped (action mask on)": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["settings", "curriculum"], default="settings")
    parser.add_argument("--iterations", type=int, default=8, help="measured iterations per arm (after 1 warm-up)")
    parser.add_argument("--envs", type=int, default=128, help="--mode curriculum: envs per runner")
    parser.add_argument("--batch", type=int, default=8192, help="--mode curriculum: train batch")
    args = parser.parse_args()
    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1
    if args.mode == "settings":
        settings(args.iterations)
    else:
        curriculum(args)


def settings(iterations: int) -> None:
    """PPO training env-steps/s of the quickstart config before/after, and its ratio to bare stepping."""
    import ray
    import torch

    from orchestrator.config import build_scheduler, load_config, resolve_item_names, resolve_task_space
    from orchestrator.rl.algorithm import build_algorithm, env_config_for
    from orchestrator.rl.curriculum_actor import start_curriculum_actor

    quickstart = REPO / "configs" / "quickstart.yaml"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        algos, actors, cfgs = {}, [], {}
        for i, (arm, overrides) in enumerate(SETTINGS_ARMS.items()):
            cfg = cfgs[arm] = load_config(quickstart, overrides)
            space = resolve_task_space(cfg)
            name = f"bench-settings-{i}"
            actors.append(start_curriculum_actor(build_scheduler(cfg, space.names, resolve_item_names(cfg)),
                                                 name=name, namespace="bench"))
            algos[arm] = build_algorithm(cfg, env_config_for(cfg, list(space.names), name, "bench"))
        samples = _alternate(algos, iterations, threads={arm: _threads(cfgs[arm]) for arm in algos},
                             set_threads=torch.set_num_threads)
        for algo in algos.values():
            algo.stop()
    finally:
        ray.shutdown()
    rows = []
    for arm, rates in samples.items():
        cfg = cfgs[arm]
        bare = _bare_env_rate(cfg)
        med = statistics.median(rates)
        rows.append({"arm": arm, "train_env_steps_per_s": med, "bare_env_steps_per_s": bare,
                     "ratio_to_bare_env": med / bare, "envs": cfg.rl.num_envs_per_env_runner,
                     "action_mask": cfg.task.action_mask})
    before = rows[0]["train_env_steps_per_s"]
    print(f"{'arm':<66} {'PPO train steps/s':>17} {'vs before':>9} {'bare env steps/s':>16} {'PPO / bare':>10}")
    for r in rows:
        print(f"{r['arm']:<66} {r['train_env_steps_per_s']:>17,.0f} {r['train_env_steps_per_s'] / before:>8.2f}x "
              f"{r['bare_env_steps_per_s']:>16,.0f} {r['ratio_to_bare_env']:>10.4f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rl_throughput.json").write_text(json.dumps(
        {"mode": "settings", "iterations": iterations, "rows": rows, "samples": samples,
         "machine": os.uname().nodename, "cpus": os.cpu_count()}, indent=2))


def _threads(cfg) -> int:
    from orchestrator.rl.algorithm import local_learner_threads

    return local_learner_threads(cfg)


def _alternate(algos: dict, iterations: int, threads: dict | None = None, set_threads=None) -> dict[str, list[float]]:
    """Train the algorithms in turn, one iteration each, ``iterations`` + 1 times; env-steps/s per
    measured iteration (the first is a warm-up: module build, first connections)."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS

    samples: dict[str, list[float]] = {k: [] for k in algos}
    for it in range(iterations + 1):
        for name, algo in algos.items():
            if set_threads is not None and threads is not None:
                set_threads(threads[name])  # each arm's learner runs with its own config's thread count
            t0 = time.perf_counter()
            result = algo.train()
            dt = time.perf_counter() - t0
            if it > 0:
                samples[name].append(result[ENV_RUNNER_RESULTS]["num_env_steps_sampled"] / dt)
    return samples


def _bare_env_rate(cfg, steps: int = 300) -> float:
    """The config's vector env stepped with random valid actions (no policy, no RLlib), steps/s; best of 3."""
    import numpy as np

    from orchestrator.config import resolve_task_space
    from tasks.simon_says import SimonSaysVectorEnv

    n = cfg.rl.num_envs_per_env_runner
    env = SimonSaysVectorEnv(num_envs=n, tasks=list(resolve_task_space(cfg).names), horizon=cfg.task.horizon,
                             action_mask=True)  # the mask picks valid actions; the timed env is the config's
    timed = env if cfg.task.action_mask else SimonSaysVectorEnv(
        num_envs=n, tasks=list(resolve_task_space(cfg).names), horizon=cfg.task.horizon)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    actions = []
    for _ in range(steps):  # a trajectory of valid actions, replayed on the timed env
        mask = obs["action_mask"]
        a = (rng.random(mask.shape) * mask).argmax(axis=1)
        actions.append(a)
        obs, *_ = env.step(a)
    best = 0.0
    for _ in range(3):
        timed.reset(seed=0)
        t0 = time.perf_counter()
        for a in actions:
            timed.step(a)
        best = max(best, steps * n / (time.perf_counter() - t0))
    return best


def curriculum(args) -> None:
    """PPO training env-steps/s with the curriculum wrapper + actor vs without (its overhead)."""
    import ray

    from orchestrator.config import build_scheduler, load_config, resolve_item_names, resolve_task_space
    from orchestrator.rl.algorithm import build_algorithm, env_config_for
    from orchestrator.rl.curriculum_actor import start_curriculum_actor

    cfg = load_config(
        REPO / "configs" / "quickstart.yaml",
        [*BEFORE, f"rl.num_envs_per_env_runner={args.envs}", f"rl.train_batch_size={args.batch}",
         f"rl.minibatch_size={min(1024, args.batch)}", "rl.num_epochs=1",
         # Three algorithms share two cores; each EnvRunner reserves half a CPU.
         "rl.num_cpus_per_env_runner=0.5"],
    )
    space = resolve_task_space(cfg)
    items = resolve_item_names(cfg)
    uniform_cfg = cfg.model_copy(deep=True)
    uniform_cfg.curriculum.kind = "uniform"
    uniform_cfg.bonus.mode = "off"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        # Keep the handles: a named actor dies with its last handle.
        actors = [  # noqa: F841
            start_curriculum_actor(build_scheduler(uniform_cfg, space.names, items), name="bench-uniform", namespace="bench"),
            start_curriculum_actor(build_scheduler(cfg, space.names, items), name="bench-lp", namespace="bench"),
        ]
        names = list(space.names)
        arms = {
            # Same env, same PPO; the only difference is the curriculum machinery.
            "without curriculum": build_algorithm(cfg, env_config_for(cfg, names, None, None)),
            # Wrapper + actor, uniform distribution, no bonus: the mechanism's own cost.
            "curriculum (uniform)": build_algorithm(uniform_cfg, env_config_for(uniform_cfg, names, "bench-uniform", "bench")),
            # The full thing: LP + dynamic bonus also changes which episodes are played.
            "curriculum (LP+bonus)": build_algorithm(cfg, env_config_for(cfg, names, "bench-lp", "bench")),
        }
        samples = _alternate(arms, args.iterations)
        for algo in arms.values():
            algo.stop()
    finally:
        ray.shutdown()

    env_rates = _raw_env_rates(cfg, space, args.envs)
    base = statistics.median(samples["without curriculum"])
    rows = []
    for name in arms:
        med = statistics.median(samples[name])
        rows.append({"arm": name, "train_env_steps_per_s": med, "ratio_to_without": med / base,
                     "raw_env_steps_per_s": env_rates.get(name)})
    overhead = 1.0 - rows[1]["train_env_steps_per_s"] / base
    full = 1.0 - rows[2]["train_env_steps_per_s"] / base
    env_overhead = 1.0 - env_rates["curriculum (uniform)"] / env_rates["without curriculum"]
    print(f"{'arm':<24} {'PPO train steps/s':>18} {'ratio':>7} {'raw env steps/s':>16}")
    for r in rows:
        raw = f"{r['raw_env_steps_per_s']:>16,.0f}" if r["raw_env_steps_per_s"] else f"{'':>16}"
        print(f"{r['arm']:<24} {r['train_env_steps_per_s']:>18,.0f} {r['ratio_to_without']:>7.3f} {raw}")
    print(f"curriculum mechanism overhead: {overhead:+.1%} of PPO training throughput (target <= 5%); "
          f"with LP + bonus: {full:+.1%}; raw vector-env stepping: {env_overhead:+.1%}")
    RESULTS.mkdir(exist_ok=True)
    out = {"config": vars(args), "rows": rows, "overhead_training": overhead, "overhead_training_lp_bonus": full,
           "overhead_raw_env": env_overhead,
           "samples": samples, "machine": os.uname().nodename, "cpus": os.cpu_count()}
    (RESULTS / "rl_throughput_curriculum.json").write_text(json.dumps(out, indent=2))


def _raw_env_rates(cfg, space, num_envs: int, steps: int = 2000) -> dict[str, float]:
    """Vector-env steps/s with random actions, bare vs wrapped (in-process curriculum client)."""
    import numpy as np

    from orchestrator.config import build_scheduler, resolve_item_names
    from orchestrator.rl.curriculum_wrapper import CurriculumVectorWrapper, LocalCurriculumClient
    from tasks.simon_says import SimonSaysVectorEnv

    def rate(env) -> float:
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        actions = rng.integers(0, env.single_action_space.n, size=(steps, num_envs))
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        return steps * num_envs / (time.perf_counter() - t0)

    def make():
        return SimonSaysVectorEnv(num_envs=num_envs, tasks=list(space.names), horizon=cfg.task.horizon)

    uniform = cfg.model_copy(deep=True)
    uniform.curriculum.kind, uniform.bonus.mode = "uniform", "off"
    # In-process client: the scheduler's updates run here too (in training they run in the actor).
    client = LocalCurriculumClient(build_scheduler(uniform, space.names, resolve_item_names(cfg)))
    wrapped = CurriculumVectorWrapper(make(), client, bonus_size=0.0)
    bare = make()
    results = {"without curriculum": [], "curriculum (uniform)": []}
    for _ in range(3):  # alternate, keep the best of each (least disturbed by other load)
        results["without curriculum"].append(rate(bare))
        results["curriculum (uniform)"].append(rate(wrapped))
    return {k: max(v) for k, v in results.items()}


if __name__ == "__main__":
    main()
