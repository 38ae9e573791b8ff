"""Uniform vs learning progress vs LP + dynamic exploration bonus, at equal env-step budgets.

Each arm trains RLlib PPO through `mto train`'s code path on the same tasks and seed,
stops at the same env-step budget, and is then evaluated on fresh episodes of every
task with its final checkpoint (`mto eval`'s code). An item is mastered at success >= 0.9.

    python -m benchmarks.simon_says_learning [--env-steps 400000] [--config configs/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
ARMS = {
    "uniform": ["curriculum.kind=uniform", "bonus.mode=off"],
    "learning_progress": ["curriculum.kind=learning_progress", "bonus.mode=off"],
    "lp+dynamic_bonus": ["curriculum.kind=learning_progress", "bonus.mode=dynamic"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"))
    parser.add_argument("--env-steps", type=int, default=400_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray
    from ray.rllib.core.rl_module.rl_module import RLModule

    from orchestrator.rl.evaluate import MODULE_SUBDIR, evaluate_policy
    from orchestrator.cli import run_training

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for arm, arm_overrides in ARMS.items():
                overrides = [
                    *arm_overrides, *args.overrides, f"seed={args.seed}", f"run_dir={tmp}",
                    f"training.max_env_steps={args.env_steps}", "training.iterations=100000",
                    "training.checkpoint_every=100000", "training.plot_every=100000",
                ]
                t0 = time.perf_counter()
                os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
                summary = run_training(args.config, tuple(overrides), live=False)
                wall = time.perf_counter() - t0
                from orchestrator.config import load_config

                cfg = load_config(args.config, overrides)
                module = RLModule.from_checkpoint(str(Path(summary.checkpoint) / MODULE_SUBDIR))
                success = evaluate_policy(module, cfg, args.eval_episodes, greedy=False, seed=args.seed + 1)
                mastered = sorted(t for t, s in success.items() if s >= cfg.training.mastery_threshold)
                rows.append({
                    "arm": arm, "env_steps": summary.env_steps, "wall_s": wall,
                    "mastered": len(mastered), "num_tasks": len(success),
                    "mean_success": sum(success.values()) / len(success),
                    "mastered_items": mastered, "success": success,
                })
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        ray.shutdown()

    print(f"{'arm':<20} {'env steps':>10} {'mastered':>9} {'mean success':>13} {'wall s':>7}")
    for r in rows:
        print(f"{r['arm']:<20} {r['env_steps']:>10,} {r['mastered']:>4}/{r['num_tasks']:<4} {r['mean_success']:>13.3f} {r['wall_s']:>7.0f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "simon_says_learning.json").write_text(json.dumps(
        {"config": args.config, "env_steps_budget": args.env_steps, "seed": args.seed, "rows": rows,
         "machine": os.uname().nodename, "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
