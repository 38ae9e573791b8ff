"""The curriculum paper's ablation: curriculum {uniform, LP} x bonus {off, static, dynamic}.

Each (arm, seed) trains RLlib PPO through `mto train`'s code path on the same tasks, stops at
the same env-step budget, and its final checkpoint is evaluated on fresh episodes of every task
(`mto eval`'s code). An item is mastered at success >= the config's mastery threshold. Every
training run is an MLflow run (experiment `simon_says_learning`, named `<mask>-<arm>-seed<k>`,
tagged with its arm) in a store that outlives the benchmark, so the arms' curves can be
compared in the MLflow UI; the evaluation is logged into the same run (`eval/...`).

The bonus arms use the product's form: the paper's (items that are tasks, paid in every
episode whatever the goal) plus count milestones; the arm `lp+dynamic(paper)` (not run
unless named) leaves the milestones out. `--mask off` repeats the arms without the action mask (the hard-exploration setting).
A long ablation is split into background invocations, each writing one part file
(`--part NAME`); `--merge` joins every part into the table and `simon_says_learning.json`.

    python -m benchmarks.simon_says_learning [--env-steps 2500000] [--seeds 0 1 2] [--mask on|off]
        [--arms ...] [--part NAME] [--config configs/simon_says_lp.yaml] [--set key=value ...]
    python -m benchmarks.simon_says_learning --merge
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = RESULTS / "simon_says_learning_parts"
REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = "simon_says_learning"
# The product's bonus: the paper's form (items that are tasks, paid whatever the goal) plus
# count milestones; the "(paper)" arm leaves the milestones out.
_PAPER_BONUS = ["bonus.items=tasks", "bonus.scope=every_episode", "bonus.count_milestones=false"]
_BONUS = [*_PAPER_BONUS[:2], "bonus.count_milestones=true"]
ARMS = {
    "uniform": ["curriculum.kind=uniform", "bonus.mode=off"],
    "uniform+static": ["curriculum.kind=uniform", "bonus.mode=static", *_BONUS],
    "uniform+dynamic": ["curriculum.kind=uniform", "bonus.mode=dynamic", *_BONUS],
    "lp": ["curriculum.kind=learning_progress", "bonus.mode=off"],
    "lp+static": ["curriculum.kind=learning_progress", "bonus.mode=static", *_BONUS],
    "lp+dynamic": ["curriculum.kind=learning_progress", "bonus.mode=dynamic", *_BONUS],
    "lp+dynamic(paper)": ["curriculum.kind=learning_progress", "bonus.mode=dynamic", *_PAPER_BONUS],
}
DEFAULT_ARMS = [arm for arm in ARMS if arm != "lp+dynamic(paper)"]
MASKS = {"on": ["task.action_mask=true"], "off": ["task.action_mask=false"]}


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """``mean [min-max]`` of a list of numbers."""
    mean = sum(values) / len(values)
    return f"{fmt.format(mean)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def deepest(items: list[str], depth: dict[str, int]) -> str:
    """The mastered item deepest in the tech tree (ties: alphabetical), or '-'."""
    return max(items, key=lambda n: (depth.get(n, 0), n)) if items else "-"


def summarise(rows: list[dict], arms: list[str], mask: str = "on") -> list[dict]:
    """One line per arm over its seeds: mastered and mean success as mean [min-max], deepest items."""
    out = []
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm and r.get("mask", "on") == mask]
        if not mine:
            continue
        out.append({
            "arm": arm, "mask": mask, "seeds": [r["seed"] for r in mine],
            "bonus_share_of_return": [r.get("bonus_share_of_return", 0.0) for r in mine],
            "env_steps": [r["env_steps"] for r in mine],
            "mastered": [r["mastered"] for r in mine],
            "mean_success": [r["mean_success"] for r in mine],
            "deepest_mastered": [r["deepest_mastered"] for r in mine],
            "mastered_mean": sum(r["mastered"] for r in mine) / len(mine),
            "wall_s": sum(r["wall_s"] for r in mine),
        })
    return out


def print_table(table: list[dict], mask: str) -> None:
    """The arms of one mask setting as a table."""
    print(f"\naction mask {mask}")
    print(f"{'arm':<16} {'seeds':>5} {'env steps':>10} {'items mastered':>16} {'mean success':>22} "
          f"{'bonus share':>12}  deepest mastered (per seed)")
    for line in table:
        steps = sum(line["env_steps"]) / len(line["env_steps"])
        print(f"{line['arm']:<16} {len(line['seeds']):>5} {steps:>10,.0f} {spread(line['mastered']):>16} "
              f"{spread(line['mean_success'], '{:.3f}'):>22} {spread(line['bonus_share_of_return'], '{:.2f}'):>12}  "
              f"{', '.join(line['deepest_mastered'])}")


def findings(table: list[dict], rows: list[dict]) -> dict:
    """The paper's findings as checks on mean items mastered (None where an arm is missing)."""
    mean = {line["arm"]: line["mastered_mean"] for line in table}

    def above(a: str, b: str) -> bool | None:
        return None if a not in mean or b not in mean else mean[a] > mean[b]

    lp_dynamic = [r for r in rows if r["arm"] == "lp+dynamic" and r.get("mask", "on") == "on"]
    return {
        "static_beats_off": {"uniform": above("uniform+static", "uniform"), "lp": above("lp+static", "lp")},
        "dynamic_beats_static": {"uniform": above("uniform+dynamic", "uniform+static"),
                                 "lp": above("lp+dynamic", "lp+static")},
        "ratio_lp_dynamic_to_uniform": (mean["lp+dynamic"] / mean["uniform"]
                                        if mean.get("uniform") and "lp+dynamic" in mean else None),
        "stone_pickaxe_in_every_lp_dynamic_seed": (
            all("stone_pickaxe" in r["mastered_items"] for r in lp_dynamic) if lp_dynamic else None),
    }


def plot_tables(tables: dict[str, list[dict]], path: Path) -> None:
    """Items mastered per arm (mean bar, one dot per seed), one panel per mask setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(mask, table) for mask, table in tables.items() if table]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (mask, table) in zip(axes[0], panels):
        names = [line["arm"] for line in table]
        ax.bar(names, [line["mastered_mean"] for line in table], color="#9ab")
        for x, line in enumerate(table):
            ax.plot([x] * len(line["mastered"]), line["mastered"], "k.", markersize=8)
        ax.set_title(f"action mask {mask}")
        ax.set_ylabel("items mastered (of 189)")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge(out: Path) -> None:
    """Join every part file into one result: tables per mask, the findings, the rows."""
    parts = sorted(PARTS.glob("*.json"))
    if not parts:
        raise SystemExit(f"no part files under {PARTS}; run with --part NAME first")
    rows, meta = [], []
    for part in parts:
        data = json.loads(part.read_text())
        rows.extend(data["rows"])
        meta.append({k: v for k, v in data.items() if k != "rows"} | {"file": part.name})
    tables = {mask: summarise(rows, list(ARMS), mask) for mask in MASKS}
    for mask, table in tables.items():
        if table:
            print_table(table, mask)
    result = {"findings_mask_on": findings(tables["on"], rows), "tables": tables, "parts": meta, "rows": rows}
    figure = out.with_suffix(".png")
    plot_tables(tables, figure)
    print(f"wrote {figure}")
    print(json.dumps(result["findings_mask_on"], indent=1))
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} from {len(parts)} part(s), {len(rows)} runs")


def finished_run(tracking_uri: str, name: str) -> tuple[str, str, int, int]:
    """The newest FINISHED training run called `name`: run id, final checkpoint, iterations, env steps."""
    from mlflow.tracking import MlflowClient

    from orchestrator.runs.run_folder import STATE_FILE, TrainerState

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = [r for r in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
            if r.info.run_name == name and r.info.status == "FINISHED"] if experiment else []
    if not runs:
        raise SystemExit(f"no finished run named {name!r} in {tracking_uri}")
    run = runs[0]
    state = TrainerState.load(Path(run.data.tags["mto.run_path"]) / STATE_FILE)
    return run.info.run_id, state.checkpoint, state.iteration, int(run.data.metrics["env_steps_total"])


def run_metrics(run_id: str, task_names: list[str]) -> dict:
    """From the run's MLflow record: the bonus's share of the return and episodes per task."""
    from mlflow.tracking import MlflowClient

    metrics = MlflowClient().get_run(run_id).data.metrics
    return {
        "bonus_share_of_return": metrics.get("bonus/share_of_return", 0.0),
        "bonus_paying_items": metrics.get("bonus/paying_items", 0.0),
        "episodes_per_task": {t: metrics.get(f"episodes/{t}", 0.0) for t in task_names},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "simon_says_lp.yaml"))
    parser.add_argument("--env-steps", type=int, default=2_500_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    parser.add_argument("--mask", choices=list(MASKS), default="on")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--run-dir", default=str(REPO / "runs" / "benchmarks"))
    parser.add_argument("--part", help="write the rows to simon_says_learning_parts/NAME.json")
    parser.add_argument("--merge", action="store_true", help="join the part files and print the tables")
    parser.add_argument("--evaluate-finished", action="store_true",
                        help="train nothing: evaluate the finished MLflow runs of these arms and seeds "
                             "(for a benchmark whose evaluation was cut short)")
    parser.add_argument("--out", default=str(RESULTS / "simon_says_learning.json"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    if args.merge:
        merge(Path(args.out))
        return
    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1

    import mlflow
    import ray
    from ray.rllib.core.rl_module.rl_module import RLModule

    from orchestrator.cli import run_training
    from orchestrator.config import load_config, resolve_task_space
    from orchestrator.rl.evaluate import MODULE_SUBDIR, evaluate_policy
    from orchestrator.runs.tracking import default_tracking_uri, log_metrics_safe

    run_dir = Path(args.run_dir).resolve()
    tracking_uri = default_tracking_uri(run_dir)
    mlflow.set_tracking_uri(tracking_uri)  # training sets it too; --evaluate-finished trains nothing
    part = PARTS / f"{args.part or f'mask-{args.mask}-seeds-' + '-'.join(map(str, args.seeds))}.json"
    part.parent.mkdir(parents=True, exist_ok=True)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    rows = []
    try:
        for seed in args.seeds:  # seeds outermost: a cut-short benchmark still compares the arms
            for arm in args.arms:
                name = f"mask-{args.mask}-{arm}-seed{seed}"
                overrides = [
                    *ARMS[arm], *MASKS[args.mask], *args.overrides, f"seed={seed}", f"run_dir={run_dir}",
                    f"tracking.tracking_uri={tracking_uri}", f"tracking.experiment={EXPERIMENT}",
                    f"tracking.run_name={name}",
                    f"training.max_env_steps={args.env_steps}", "training.iterations=100000",
                    "training.checkpoint_every=100000", "training.plot_every=50",
                ]
                if args.evaluate_finished:
                    run_id, checkpoint, iterations, env_steps = finished_run(tracking_uri, name)
                    wall = float("nan")
                else:
                    t0 = time.perf_counter()
                    summary = run_training(args.config, tuple(overrides), live=False)
                    wall = time.perf_counter() - t0
                    run_id, checkpoint = summary.run_id, summary.checkpoint
                    iterations, env_steps = summary.iterations, summary.env_steps
                cfg = load_config(args.config, overrides)
                space = resolve_task_space(cfg)
                depth = dict(zip(space.names, space.depth or ()))
                module = RLModule.from_checkpoint(str(Path(checkpoint) / MODULE_SUBDIR))
                success = evaluate_policy(module, cfg, args.eval_episodes, greedy=False, seed=10_000 + seed)
                mastered = sorted(t for t, s in success.items() if s >= cfg.training.mastery_threshold)
                row = {
                    "arm": arm, "mask": args.mask, "seed": seed, "env_steps": env_steps, "wall_s": wall,
                    "mastered": len(mastered), "num_tasks": len(success),
                    "mean_success": sum(success.values()) / len(success),
                    "deepest_mastered": deepest(mastered, depth), "mastered_items": mastered, "success": success,
                    "mlflow_run_id": run_id,
                }
                with mlflow.start_run(run_id=run_id):
                    row.update(run_metrics(run_id, list(space.names)))
                    mlflow.set_tags({"mto.benchmark": EXPERIMENT, "mto.arm": arm, "mto.action_mask": args.mask})
                    log_metrics_safe({**{f"eval/success_rate/{t}": s for t, s in success.items()},
                                      "eval/items_mastered": len(mastered), "eval/mean_success": row["mean_success"]},
                                     step=iterations)
                rows.append(row)
                # Written after every run: a part cut short still keeps what finished.
                part.write_text(json.dumps(
                    {"config": args.config, "overrides": args.overrides, "mask": args.mask,
                     "env_steps_budget": args.env_steps, "seeds": args.seeds, "arms": args.arms,
                     "eval_episodes_per_task": args.eval_episodes, "rows": rows,
                     "mlflow": {"tracking_uri": tracking_uri, "experiment": EXPERIMENT},
                     "machine": os.uname().nodename, "cpus": os.cpu_count()}, indent=2))
                print(f"{name}: {len(mastered)}/{len(success)} mastered, deepest {row['deepest_mastered']}, "
                      f"bonus share {row['bonus_share_of_return']:.2f}, "
                      f"{env_steps:,} env steps in {wall:.0f} s", flush=True)
    finally:
        ray.shutdown()
    print_table(summarise(rows, args.arms, args.mask), args.mask)
    print(f"wrote {part}; MLflow runs: {tracking_uri} (experiment {EXPERIMENT}); "
          f"join the parts with --merge")


if __name__ == "__main__":
    main()
