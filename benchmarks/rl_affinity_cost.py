"""Cost of measuring task affinity inside RLlib's PPO learner, and the affinity it measures.

Identical PPO algorithms (configs/simon_says_tag.yaml: shared_bottom network, sampling in
the driver) are trained in alternation (A, B, C, A, B, C, ...), one without affinity and
one per ``--every`` value (lookahead every k minibatch updates); the overhead is the ratio
of median iteration times measured in this one run. The last arm's affinity matrix is
printed (rows: source task i, columns: task j; positive = a step on i lowers j's PPO loss).

    python -m benchmarks.rl_affinity_cost [--iterations 8] [--every 1 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "simon_says_tag.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=8, help="measured iterations per arm (after 1 warm-up)")
    parser.add_argument("--every", type=int, nargs="+", default=[1, 4], help="affinity_every values to compare")
    args = parser.parse_args()
    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1

    import numpy as np
    import ray

    from orchestrator.config import load_config, resolve_task_space
    from orchestrator.runs.progress import console, task_table
    from orchestrator.rl.algorithm import build_algorithm, env_config_for, learner_affinity

    cfg = load_config(CONFIG)
    names = list(resolve_task_space(cfg).names)
    env_config = env_config_for(cfg, names, None, None)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        arms = {"no affinity": build_algorithm(cfg, env_config, cpus=1)}
        for k in args.every:
            arms[f"affinity every {k}"] = build_algorithm(cfg, env_config, cpus=1, affinity_every=k,
                                                          affinity_lr=cfg.tune.affinity_lr)
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        for iteration in range(args.iterations + 1):
            for name, algo in arms.items():
                started = time.perf_counter()
                algo.train()
                if iteration > 0:  # the first one builds and warms up
                    seconds[name].append(time.perf_counter() - started)
        states = {name: learner_affinity(algo) for name, algo in arms.items()}
        for algo in arms.values():
            algo.stop()
    finally:
        ray.shutdown()

    base = statistics.median(seconds["no affinity"])
    rows, table = [], []
    for name, times in seconds.items():
        state = states[name]
        row = {"arm": name, "median_iteration_s": statistics.median(times), "ratio": statistics.median(times) / base,
               "affinity_s_total": state["seconds"] if state else 0.0,
               "measurements": int(np.max(state["count"])) if state else 0}
        rows.append(row)
        table.append((name, row["median_iteration_s"], row["ratio"], row["affinity_s_total"], row["measurements"]))
    console.print(task_table(f"PPO iteration time with and without affinity ({args.iterations} iterations per arm, "
                             f"batch {cfg.rl.train_batch_size}, minibatch {cfg.rl.minibatch_size}, {cfg.rl.num_epochs} epochs)",
                             table, ["arm", "median s/iter", "ratio", "affinity s (total)", "measurements"]))
    last = states[list(arms)[-1]]
    matrix = np.array(last["matrix"])
    console.print(task_table("Affinity i -> j (x1000) of the last arm", [
        (names[i], *[float(1000 * v) for v in matrix[i]]) for i in range(len(names))], ["source"] + names))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "rl_affinity_cost.json"
    out.write_text(json.dumps({"config": str(CONFIG.name), "iterations": args.iterations, "arms": rows,
                               "tasks": names, "affinity": matrix.tolist(), "machine": os.uname().nodename,
                               "cpus": len(os.sched_getaffinity(0))}, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
