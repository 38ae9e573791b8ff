"""Does the grouping `mto tune-groups` picks on Simon Says beat the alternatives at equal compute?

For each seed: `mto tune-groups configs/simon_says_tag.yaml` (affinity from the PPO
learner, top-3 candidate groupings trained as Tune trials, winner by mean success), then
at the same total PPO iterations as the winner (budget x number of its groups):
  - all tasks in one network;
  - a random partition of the tasks into as many groups.
Every arm is scored the same way: mean over tasks of the success rate on fresh episodes
(``training.eval_episodes_per_task`` per task, sampled actions), each task by its best group.

    python -m benchmarks.simon_says_grouping [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "simon_says_tag.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    import numpy as np
    import ray

    from orchestrator.runs.progress import console, task_table

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    # One store for every seed: MLflow keeps its SQLite engine per process, and a store
    # deleted under it turns the next one read-only.
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [one_seed(seed, tmp) for seed in args.seeds]
    finally:
        ray.shutdown()

    keys = ["tag_mean_success", "one_network_equal_compute", "random_groups_equal_compute", "co_training_mean_success"]
    table = [(str(r["seed"]), *[r[k] for k in keys], r["search_wall_s"]) for r in rows]
    table.append(("mean", *[float(np.mean([r[k] for r in rows])) for k in keys],
                  float(np.mean([r["search_wall_s"] for r in rows]))))
    console.print(task_table("Mean success on fresh episodes (8 Simon Says tasks)", table,
                             ["seed", "TAG grouping", "one network (=compute)", "random groups (=compute)",
                              "one network (1/k compute)", "search s"]))
    for r in rows:
        console.print(f"seed {r['seed']}: chosen {r['chosen_groups']}  random {r['random_groups']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "simon_says_grouping.json"
    out.write_text(json.dumps({"config": CONFIG.name, "rows": rows, "machine": os.uname().nodename,
                               "cpus": len(os.sched_getaffinity(0))}, indent=2))
    console.print(f"wrote {out}")


def one_seed(seed: int, run_dir: str) -> dict:
    """The search and both equal-compute baselines for one seed."""
    import numpy as np
    from mlflow.tracking import MlflowClient

    from orchestrator.config import load_config, resolve_task_space
    from orchestrator.rl.evaluate import best_success_per_task
    from orchestrator.tune.rl_trials import train_and_evaluate, trial_config
    from orchestrator.tune.search import run_tune_groups

    overrides = (f"seed={seed}", f"run_dir={run_dir}", f"name=simon_says_tag_seed{seed}")
    started = time.perf_counter()
    search = run_tune_groups(CONFIG, overrides)
    search_s = time.perf_counter() - started
    parent = MlflowClient(search.tracking_uri).get_run(search.parent_run_id).data.metrics
    cfg = load_config(CONFIG, overrides)
    names = list(resolve_task_space(cfg).names)
    groups = search.best["groups"]
    budget = cfg.tune.budget_iterations or cfg.training.iterations
    params = {"config": cfg.to_dict(), "trial_cpus": 2}

    def quiet(iteration, metrics, algo) -> None:
        return None

    one = train_and_evaluate(trial_config(params, names), params, budget * len(groups), quiet)
    rng = np.random.default_rng(seed)
    partition = [sorted(map(str, part)) for part in np.array_split(rng.permutation(names), len(groups))]
    random_best = best_success_per_task(train_and_evaluate(trial_config(params, group), params, budget, quiet)
                                        for group in partition)
    return {
        "seed": seed, "chosen_groups": groups, "random_groups": partition,
        "tag_mean_success": search.best["mean_success"],
        "co_training_mean_success": parent["co_training/mean_success"],
        "one_network_equal_compute": float(np.mean(list(one.values()))),
        "random_groups_equal_compute": float(np.mean(list(random_best.values()))),
        "search_wall_s": search_s, "affinity_time_s": parent["co_training/affinity_time_s"],
        "iterations_per_arm": budget * len(groups),
    }


if __name__ == "__main__":
    main()
