"""Uniform vs learning progress vs LP + dynamic exploration bonus, 3 seeds, equal env-step budgets.

Each (arm, seed) trains RLlib PPO through `mto train`'s code path on the same tasks, stops at
the same env-step budget, and its final checkpoint is evaluated on fresh episodes of every task
(`mto eval`'s code). An item is mastered at success >= the config's mastery threshold. Every
training run is an MLflow run (experiment `simon_says_learning`, named `<arm>-seed<k>`, tagged
with its arm) in a store that outlives the benchmark, so the arms' curves can be compared in
the MLflow UI; the evaluation is logged into the same run (`eval/...`).

    python -m benchmarks.simon_says_learning [--env-steps 3000000] [--seeds 0 1 2]
        [--config configs/simon_says_lp.yaml] [--run-dir runs/benchmarks] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = "simon_says_learning"
ARMS = {
    "uniform": ["curriculum.kind=uniform", "bonus.mode=off"],
    "learning_progress": ["curriculum.kind=learning_progress", "bonus.mode=off"],
    "lp+dynamic_bonus": ["curriculum.kind=learning_progress", "bonus.mode=dynamic"],
}


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """``mean [min-max]`` of a list of numbers."""
    mean = sum(values) / len(values)
    return f"{fmt.format(mean)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def deepest(items: list[str], depth: dict[str, int]) -> str:
    """The mastered item deepest in the tech tree (ties: alphabetical), or '-'."""
    return max(items, key=lambda n: (depth.get(n, 0), n)) if items else "-"


def summarise(rows: list[dict], arms: list[str]) -> list[dict]:
    """One line per arm over its seeds: mastered and mean success as mean [min-max], deepest items."""
    out = []
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        out.append({
            "arm": arm, "seeds": [r["seed"] for r in mine],
            "env_steps": [r["env_steps"] for r in mine],
            "mastered": [r["mastered"] for r in mine],
            "mean_success": [r["mean_success"] for r in mine],
            "deepest_mastered": [r["deepest_mastered"] for r in mine],
            "mastered_mean": sum(r["mastered"] for r in mine) / len(mine),
            "wall_s": sum(r["wall_s"] for r in mine),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "simon_says_lp.yaml"))
    parser.add_argument("--env-steps", type=int, default=3_000_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--run-dir", default=str(REPO / "runs" / "benchmarks"))
    parser.add_argument("--out", default=str(RESULTS / "simon_says_learning.json"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    os.environ.update(RAY_AUTH_MODE="token", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # token auth, 127.0.0.1: orchestrator/runs/local_ray.py

    import mlflow
    import ray
    from ray.rllib.core.rl_module.rl_module import RLModule

    from orchestrator.cli import run_training
    from orchestrator.config import load_config, resolve_task_space
    from orchestrator.rl.evaluate import MODULE_SUBDIR, evaluate_policy
    from orchestrator.runs.tracking import default_tracking_uri, log_metrics_safe

    run_dir = Path(args.run_dir).resolve()
    tracking_uri = default_tracking_uri(run_dir)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    rows = []
    try:
        for seed in args.seeds:  # seeds outermost: a cut-short benchmark still compares the arms
            for arm in args.arms:
                overrides = [
                    *ARMS[arm], *args.overrides, f"seed={seed}", f"run_dir={run_dir}",
                    f"tracking.tracking_uri={tracking_uri}", f"tracking.experiment={EXPERIMENT}",
                    f"tracking.run_name={arm}-seed{seed}",
                    f"training.max_env_steps={args.env_steps}", "training.iterations=100000",
                    "training.checkpoint_every=100000", "training.plot_every=50",
                ]
                t0 = time.perf_counter()
                summary = run_training(args.config, tuple(overrides), live=False)
                wall = time.perf_counter() - t0
                cfg = load_config(args.config, overrides)
                space = resolve_task_space(cfg)
                depth = dict(zip(space.names, space.depth or ()))
                module = RLModule.from_checkpoint(str(Path(summary.checkpoint) / MODULE_SUBDIR))
                success = evaluate_policy(module, cfg, args.eval_episodes, greedy=False, seed=10_000 + seed)
                mastered = sorted(t for t, s in success.items() if s >= cfg.training.mastery_threshold)
                row = {
                    "arm": arm, "seed": seed, "env_steps": summary.env_steps, "wall_s": wall,
                    "mastered": len(mastered), "num_tasks": len(success),
                    "mean_success": sum(success.values()) / len(success),
                    "deepest_mastered": deepest(mastered, depth), "mastered_items": mastered, "success": success,
                    "mlflow_run_id": summary.run_id,
                }
                rows.append(row)
                with mlflow.start_run(run_id=summary.run_id):
                    mlflow.set_tags({"mto.benchmark": EXPERIMENT, "mto.arm": arm})
                    log_metrics_safe({**{f"eval/success_rate/{t}": s for t, s in success.items()},
                                      "eval/items_mastered": len(mastered), "eval/mean_success": row["mean_success"]},
                                     step=summary.iterations)
                print(f"{arm} seed {seed}: {len(mastered)}/{len(success)} mastered, deepest {row['deepest_mastered']}, "
                      f"{summary.env_steps:,} env steps in {wall:.0f} s", flush=True)
    finally:
        ray.shutdown()

    table = summarise(rows, [a for a in args.arms if any(r["arm"] == a for r in rows)])
    print(f"\n{'arm':<18} {'env steps (mean)':>16} {'items mastered':>18} {'mean success':>22}  deepest mastered (per seed)")
    for line in table:
        steps = sum(line["env_steps"]) / len(line["env_steps"])
        print(f"{line['arm']:<18} {steps:>16,.0f} {spread(line['mastered']):>18} "
              f"{spread(line['mean_success'], '{:.3f}'):>22}  {', '.join(line['deepest_mastered'])}")
    by_arm = {line["arm"]: line["mastered_mean"] for line in table}
    ratio = None
    if by_arm.get("uniform") and "lp+dynamic_bonus" in by_arm:
        ratio = by_arm["lp+dynamic_bonus"] / by_arm["uniform"]
        print(f"LP + dynamic bonus / uniform, items mastered (mean over seeds): {ratio:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(
        {"config": args.config, "overrides": args.overrides, "env_steps_budget": args.env_steps,
         "seeds": args.seeds, "eval_episodes_per_task": args.eval_episodes, "rows": rows, "summary": table,
         "ratio_lp_bonus_to_uniform": ratio, "mlflow": {"tracking_uri": tracking_uri, "experiment": EXPERIMENT},
         "machine": os.uname().nodename, "cpus": os.cpu_count()}, indent=2))
    print(f"wrote {out}; MLflow runs: {tracking_uri} (experiment {EXPERIMENT})")


if __name__ == "__main__":
    main()
