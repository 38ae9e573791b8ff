"""Meta-World MT10 with RLlib SAC: each shipped config trained for a fixed env-step budget, then
evaluated on fresh episodes of every task; throughput as a ratio to bare MT10 stepping.

For each of configs/mt10_sac{,_pcgrad,_soft_modular,_care}.yaml (at the benchmark's size, printed
with the results: the shipped 3 x 400 networks and batch 1,280 do not fit an hour on 2 CPU cores),
the SAC algorithm is built exactly as `mto train` builds it (RLlib's SAC, the multi-task learner,
the Meta-World vector env in the driver's EnvRunner; tasks drawn uniformly by the env, which is
what the configs' uniform curriculum does), trained until ``--env-steps``, and its final policy
evaluated greedily on ``--eval-episodes`` fresh episodes per task (success = Meta-World's flag at
any step). Bare MT10 stepping (the same vector env, random actions, no policy, no RLlib) is
measured in the same run, before the first config, and so is a plain-torch MT-SAC update at
the benchmark's sizes (`benchmarks.minimal_sac`, one thread): each config's median learner
update is reported as a ratio to it.

    python -m benchmarks.mt10 [--env-steps 20000] [--eval-episodes 5] [--configs mt10_sac ...]
                              [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = ["mt10_sac", "mt10_sac_pcgrad", "mt10_sac_soft_modular", "mt10_sac_care"]
# The benchmark's size for 2 shared CPU cores (applied to every config, then --set on top):
# 2 x 256 networks, batch 512 (~51 per task), 200 env steps sampled per round (20 per env) and
# one update per 40 env steps (the papers: one per 10, batch 1,280). The configs' one EnvRunner
# actor samples while the learner (one torch thread, in the driver) updates.
SIZE = ["model.hidden=[256,256]", "sac.train_batch_size=512", "rl.rollout_fragment_length=20",
        "sac.training_intensity=12.8", "sac.learning_starts=2000", "sac.env_steps_per_iteration=2000",
        "rl.learner_threads=1"]


def bare_stepping(num_envs: int, steps: int, seed: int = 0) -> float:
    """Env-steps/s of the MT10 vector env alone: random actions, no policy, no RLlib."""
    import numpy as np

    from tasks.metaworld.envs import MetaWorldVectorEnv

    env = MetaWorldVectorEnv(num_envs=num_envs, task_set="MT10", horizon=500, benchmark_seed=seed)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (steps // num_envs, num_envs, 4)).astype(np.float32)
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    seconds = time.perf_counter() - start
    env.close()
    return actions.shape[0] * num_envs / seconds


def run_config(name: str, overrides: list[str], env_steps: int, eval_episodes: int) -> dict:
    """Train one config for ``env_steps``, evaluate it; the timings and per-task success."""
    from orchestrator.config import load_config, resolve_task_space
    from orchestrator.rl.algorithm import build_algorithm, env_config_for
    from orchestrator.rl.evaluate import evaluation_episodes

    cfg = load_config(REPO / "configs" / f"{name}.yaml", SIZE + overrides)
    names = list(resolve_task_space(cfg).names)
    algo = build_algorithm(cfg, env_config_for(cfg, names, None, None))
    updates: list[float] = []
    update = algo.learner_group.update

    def timed_update(*args, **kwargs):  # the learner runs in this process (num_learners: 0)
        started = time.perf_counter()
        try:
            return update(*args, **kwargs)
        finally:
            updates.append(time.perf_counter() - started)

    algo.learner_group.update = timed_update
    steps, iterations = 0, 0
    started = time.perf_counter()
    try:
        while steps < env_steps:
            result = algo.train()
            steps += int(result["env_runners"]["num_env_steps_sampled"])
            iterations += 1
            print(f"  {name}: {steps} env steps, {len(updates)} updates, {time.perf_counter() - started:.0f} s",
                  flush=True)
        train_seconds = time.perf_counter() - started
        eval_started = time.perf_counter()
        outcomes = evaluation_episodes(algo.get_module(), cfg, eval_episodes, greedy=True, seed=10_000)
        eval_seconds = time.perf_counter() - eval_started
    finally:
        algo.stop()
    per_task = outcomes.success.reshape(len(names), eval_episodes).mean(axis=1)
    return {
        "config": name, "overrides": SIZE + overrides, "architecture": cfg.model.architecture,
        "combiner": cfg.model.combiner, "env_steps": steps, "iterations": iterations, "updates": len(updates),
        "train_seconds": train_seconds, "env_steps_per_second": steps / train_seconds,
        "learner_update_seconds_median": statistics.median(updates) if updates else None,
        "learner_update_seconds_total": sum(updates), "eval_seconds": eval_seconds,
        "eval_episodes_per_task": eval_episodes, "mean_success": float(per_task.mean()),
        "success": dict(zip(names, per_task.tolist())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-steps", type=int, default=20_000, help="env steps per config (all 10 tasks together)")
    parser.add_argument("--eval-episodes", type=int, default=5, help="fresh greedy episodes per task at the end")
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every config")
    parser.add_argument("--out", default=str(RESULTS / "mt10.json"))
    args = parser.parse_args()
    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from benchmarks.minimal_sac import plain_update_seconds
    from orchestrator.config import load_config

    wall = time.perf_counter()
    bare = bare_stepping(num_envs=10, steps=5_000)
    print(f"bare MT10 stepping (10 envs, random actions): {bare:,.0f} env-steps/s", flush=True)
    sized = load_config(REPO / "configs" / "mt10_sac.yaml", SIZE + args.overrides)
    plain = plain_update_seconds(sized.sac.train_batch_size, list(sized.model.hidden))
    print(f"plain-torch MT-SAC update (batch {sized.sac.train_batch_size}, hidden {list(sized.model.hidden)}, "
          f"1 thread): {plain * 1000:.1f} ms", flush=True)
    rows = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        for name in args.configs:
            rows.append(run_config(name, args.overrides, args.env_steps, args.eval_episodes))
            rows[-1]["ratio_to_bare"] = rows[-1]["env_steps_per_second"] / bare
            rows[-1]["update_ratio_to_plain"] = (rows[-1]["learner_update_seconds_median"] or float("nan")) / plain
    finally:
        ray.shutdown()
    report = {"env_steps_budget": args.env_steps, "bare_env_steps_per_second": bare,
              "plain_torch_update_seconds_median": plain,
              "wall_seconds": time.perf_counter() - wall, "machine": "2 shared AMD EPYC cores, no GPU",
              "configs": rows}
    print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def print_table(report: dict) -> None:
    rows = report["configs"]
    print(f"\nMT10, {report['env_steps_budget']:,} env steps per config; bare stepping "
          f"{report['bare_env_steps_per_second']:,.0f} env-steps/s; plain-torch MT-SAC update "
          f"{report['plain_torch_update_seconds_median'] * 1000:.1f} ms")
    print("| config | mean success | env-steps/s | / bare | learner update (median ms) | / plain torch | updates |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['config']} | {r['mean_success']:.2f} | {r['env_steps_per_second']:,.0f} | "
              f"{r['ratio_to_bare']:.3f} | {(r['learner_update_seconds_median'] or float('nan')) * 1000:.1f} | "
              f"{r['update_ratio_to_plain']:.2f}x | {r['updates']} |")
    tasks = list(rows[0]["success"]) if rows else []
    print("\n| task | " + " | ".join(r["config"] for r in rows) + " |")
    print("| --- |" + " ---: |" * len(rows))
    for t in tasks:
        print(f"| {t} | " + " | ".join(f"{r['success'][t]:.2f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
