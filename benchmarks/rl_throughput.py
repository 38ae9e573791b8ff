"""Env-steps/s of RLlib PPO training on Simon Says against a minimal PPO loop in plain torch
(default), or the curriculum wrapper's cost (``--mode curriculum``).

`--mode shipped` (default): the quickstart config as shipped, its one-core form (sampling in
the driver) and its EnvRunner form without overlap, against `benchmarks.minimal_ppo` (the same
env, tasks, mask, network and PPO settings in ~150 lines of torch on one thread) and bare
vector-env stepping, all in one run. Arms take turns in blocks of ``--block`` iterations (the
first of each block is not counted; a block ends once no sample request is in flight), so
machine noise hits every arm alike. Then `mto train configs/quickstart.yaml` runs as a user runs
it, and the throughput its progress line showed (MLflow's ``env_steps_per_second``) is reported
beside the harness figure.
`--mode curriculum`: the same PPO with and without the curriculum wrapper + actor; the
overhead is the ratio of their median throughputs.

    python -m benchmarks.rl_throughput [--mode shipped|curriculum] [--rounds 4] [--block 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


REPO = Path(__file__).resolve().parent.parent
# The quickstart's rl: settings before issue 13 (RLlib's default connectors, one EnvRunner actor).
BEFORE = ["task.action_mask=false", "bonus.scope=all_items", "rl.num_env_runners=1", "rl.lean_connectors=false",
          "rl.learner_threads=null", "rl.num_envs_per_env_runner=64", "rl.train_batch_size=4096",
          "rl.minibatch_size=512", "rl.num_epochs=3"]
MINIMAL = "minimal loop: plain torch, 1 thread, no Ray"
SHIPPED = "quickstart.yaml as shipped"
ARMS = {
    SHIPPED: [],
    "one core: sampling in the driver (num_env_runners=0)": ["rl.num_env_runners=0", "rl.overlap_sampling=false"],
    "1 EnvRunner, no overlap": ["rl.num_env_runners=1", "rl.overlap_sampling=false"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["shipped", "curriculum"], default="shipped")
    parser.add_argument("--rounds", type=int, default=4, help="--mode shipped: turns per arm")
    parser.add_argument("--block", type=int, default=3, help="--mode shipped: iterations per turn (first not counted)")
    parser.add_argument("--cli-iterations", type=int, default=20, help="--mode shipped: iterations of the mto train run")
    parser.add_argument("--iterations", type=int, default=8, help="--mode curriculum: measured iterations per arm")
    parser.add_argument("--envs", type=int, default=128, help="--mode curriculum: envs per runner")
    parser.add_argument("--batch", type=int, default=8192, help="--mode curriculum: train batch")
    args = parser.parse_args()
    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1
    if args.mode == "shipped":
        shipped(args)
    else:
        curriculum(args)


def shipped(args) -> None:
    """The shipped quickstart (and its variants) against the minimal loop and bare stepping, one run."""
    import ray
    import torch

    from benchmarks.minimal_ppo import MinimalPPO, MinimalPPOSettings
    from orchestrator.config import build_scheduler, load_config, resolve_item_names, resolve_task_space
    from orchestrator.rl.algorithm import build_algorithm, env_config_for, local_learner_threads
    from orchestrator.rl.curriculum_actor import start_curriculum_actor

    quickstart = REPO / "configs" / "quickstart.yaml"
    cfgs = {arm: load_config(quickstart, overrides) for arm, overrides in ARMS.items()}
    names = list(resolve_task_space(cfgs[SHIPPED]).names)
    minimal = MinimalPPO(MinimalPPOSettings.from_config(cfgs[SHIPPED], names))
    # Logical CPUs for scheduling only: every arm's EnvRunners must fit at once (they take turns).
    # Workers at the driver's priority, as in the local Ray `mto train` starts (orchestrator.runs.session).
    ray.init(num_cpus=max(4, 2 * (os.cpu_count() or 2)), include_dashboard=False, logging_level="ERROR",
             _system_config={"worker_niceness": 0})
    rates: dict[str, list[float]] = {MINIMAL: [], **{arm: [] for arm in ARMS}}
    split: dict[str, list[tuple[float, float]]] = {MINIMAL: []}
    lags: dict[str, list[float]] = {arm: [] for arm in ARMS}
    try:
        algos, actors = {}, []
        for i, (arm, cfg) in enumerate(cfgs.items()):
            space = resolve_task_space(cfg)
            name = f"bench-shipped-{i}"
            actors.append(start_curriculum_actor(build_scheduler(cfg, space.names, resolve_item_names(cfg)),
                                                 name=name, namespace="bench"))
            algos[arm] = build_algorithm(cfg, env_config_for(cfg, list(space.names), name, "bench"))
        threads = {arm: local_learner_threads(cfg) for arm, cfg in cfgs.items()}
        for _ in range(args.rounds):
            for it in range(args.block):
                sample_s, learn_s = minimal.iteration()
                if it > 0:
                    rates[MINIMAL].append(minimal.env_steps_per_iteration / (sample_s + learn_s))
                    split[MINIMAL].append((sample_s, learn_s))
            for arm, algo in algos.items():
                torch.set_num_threads(threads[arm])
                for it in range(args.block):
                    t0 = time.perf_counter()
                    result = algo.train()
                    dt = time.perf_counter() - t0
                    if it > 0:
                        rates[arm].append(result["env_runners"]["num_env_steps_sampled"] / dt)
                        if "policy_lag" in result:
                            lags[arm].append(float(result["policy_lag"]))
                _wait_for_samples_in_flight(algo)
        for algo in algos.values():
            algo.stop()
    finally:
        ray.shutdown()
    bare = _bare_env_rate(cfgs[SHIPPED])
    base = statistics.median(rates[MINIMAL])
    rows = []
    for arm, values in rates.items():
        cfg = cfgs.get(arm, cfgs[SHIPPED])
        med = statistics.median(values)
        row = {"arm": arm, "train_env_steps_per_s": med, "min": min(values), "max": max(values),
               "ratio_to_minimal_loop": med / base, "ratio_to_bare_env": med / bare}
        if arm in ARMS:
            row.update(num_env_runners=cfg.rl.num_env_runners, overlap_sampling=cfg.rl.overlap_sampling,
                       policy_lag_max=max(lags[arm]) if lags[arm] else 0.0)
        else:
            row.update(sample_only_env_steps_per_s=minimal.env_steps_per_iteration / statistics.median(a for a, _ in split[MINIMAL]),
                       learn_only_env_steps_per_s=minimal.env_steps_per_iteration / statistics.median(b for _, b in split[MINIMAL]))
        rows.append(row)
    cli = _progress_line_rate(args.cli_iterations)
    harness = next(r for r in rows if r["arm"] == SHIPPED)["train_env_steps_per_s"]
    print(f"{'arm':<55} {'env steps/s':>11} {'[min-max]':>17} {'/ minimal':>9} {'/ bare env':>10} {'lag':>4}")
    for r in rows:
        span = f"[{r['min']:,.0f}-{r['max']:,.0f}]"
        lag = f"{r['policy_lag_max']:>4.0f}" if "policy_lag_max" in r else f"{'':>4}"
        print(f"{r['arm']:<55} {r['train_env_steps_per_s']:>11,.0f} {span:>17} {r['ratio_to_minimal_loop']:>8.2f}x "
              f"{r['ratio_to_bare_env']:>10.3f} {lag}")
    minimal_row = rows[0]
    print(f"minimal loop alone: sampling {minimal_row['sample_only_env_steps_per_s']:,.0f} env steps/s, "
          f"learning {minimal_row['learn_only_env_steps_per_s']:,.0f}; bare env stepping {bare:,.0f}")
    print(f"`mto train configs/quickstart.yaml` progress line: median {cli['median']:,.0f} env steps/s "
          f"(iterations 3-{args.cli_iterations}, measured after the arms), {cli['median'] / harness:.2f}x the harness's "
          f"figure for the shipped config; whole run {cli['wall_s']:.0f} s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rl_throughput.json").write_text(json.dumps(
        {"mode": "shipped", "rounds": args.rounds, "block": args.block, "rows": rows, "samples": rates,
         "bare_env_steps_per_s": bare, "mto_train_progress_line": cli,
         "machine": os.uname().nodename, "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()}, indent=2))


def _wait_for_samples_in_flight(algo) -> None:
    """Block until the EnvRunners' queued calls (an overlapped sample request) are done, so they do not
    run during another arm's turn; the batch stays for the arm's next (uncounted) iteration."""
    if algo.env_runner_group.num_remote_workers():
        algo.env_runner_group.foreach_env_runner(lambda runner: None, local_env_runner=False)


def _progress_line_rate(iterations: int) -> dict:
    """`mto train configs/quickstart.yaml` for ``iterations``: the env-steps/s its progress line showed."""
    import mlflow

    with tempfile.TemporaryDirectory() as run_dir:
        uri = f"sqlite:///{run_dir}/mlflow.db"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "orchestrator.cli", "train", str(REPO / "configs" / "quickstart.yaml"),
                        "--no-live", "--run-dir", run_dir, "--set", f"training.iterations={iterations}"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        client = mlflow.MlflowClient(uri)
        run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
        history = sorted(client.get_metric_history(run.info.run_id, "env_steps_per_second"), key=lambda m: m.step)
    values = [m.value for m in history[2:]]  # the first two: module build, first connections
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values,
            "iterations": iterations, "wall_s": wall}


def _alternate(algos: dict, iterations: int) -> dict[str, list[float]]:
    """Train the algorithms in turn, one iteration each, ``iterations`` + 1 times; env-steps/s per
    measured iteration (the first is a warm-up: module build, first connections)."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS

    samples: dict[str, list[float]] = {k: [] for k in algos}
    for it in range(iterations + 1):
        for name, algo in algos.items():
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
