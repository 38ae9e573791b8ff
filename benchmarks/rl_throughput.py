"""Env-steps/s of RLlib PPO training with the curriculum wrapper vs the same PPO without it.

Both algorithms are built side by side on one local Ray and trained in alternation
(A, B, A, B, ...), so machine noise hits both arms alike; the overhead is the ratio
of their median throughputs, measured in this one run.

    python -m benchmarks.rl_throughput [--iterations 6] [--envs 128] [--batch 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=8, help="measured iterations per arm (after 1 warm-up)")
    parser.add_argument("--envs", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8192)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS

    from orchestrator.config import build_scheduler, load_config, resolve_item_names, resolve_task_space
    from orchestrator.rl.curriculum_actor import start_curriculum_actor
    from orchestrator.rl.algorithm import build_algorithm, env_config_for

    cfg = load_config(
        Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml",
        [f"rl.num_envs_per_env_runner={args.envs}", f"rl.train_batch_size={args.batch}",
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
        samples: dict[str, list[float]] = {k: [] for k in arms}
        for it in range(args.iterations + 1):
            for name, algo in arms.items():
                t0 = time.perf_counter()
                result = algo.train()
                dt = time.perf_counter() - t0
                steps = result[ENV_RUNNER_RESULTS]["num_env_steps_sampled"]
                if it == 0:
                    continue  # warm-up: module build, first connections
                samples[name].append(steps / dt)
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
    (RESULTS / "rl_throughput.json").write_text(json.dumps(out, indent=2))


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
