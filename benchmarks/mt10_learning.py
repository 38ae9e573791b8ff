"""Meta-World MT10 learning results: MT-SAC (3 seeds), PCGrad, soft modularization and CARE,
each trained by `mto train` for the same env-step budget, then evaluated greedily.

Every arm is the user's command, `mto train configs/<config>.yaml --no-live --set ...`, with the
same budget settings (`BUDGET`, printed with the results) in its own process; the runs' MLflow
store is `--run-dir`. After each run, `orchestrator.evaluate` plays ``--eval-episodes`` fresh greedy
episodes per task with its final checkpoint (success = Meta-World's flag at any step). The
training curve of each run (the curriculum's per-task success estimate, logged every iteration
against `env_steps_total`) is read back from MLflow; one PNG shows the four methods' mean
success against env steps (MT-SAC: mean and min-max band over seeds), and is logged to an MLflow
run `mt10-comparison` beside the JSON. Results are written after every arm, so a partial run
keeps what finished.

    python -m benchmarks.mt10_learning [--env-steps 250000] [--run-dir runs-mt10]
                                       [--arms mt10_sac:0 mt10_sac:1 ...] [--eval-episodes 10]
    python -m benchmarks.mt10_learning --combine a.json b.json   # arms run as separate jobs: one report

The published anchors (CAGrad paper, Table 3; 2M steps per task, best evaluation over the run,
10 seeds): MT-SAC 0.49, PCGrad 0.72, soft modularization 0.73, CARE 0.84 mean success.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ARMS = ["mt10_sac:0", "mt10_sac:1", "mt10_sac:2", "mt10_sac_pcgrad:0", "mt10_sac_soft_modular:0", "mt10_sac_care:0"]
PUBLISHED = {"mt10_sac": 0.49, "mt10_sac_pcgrad": 0.72, "mt10_sac_soft_modular": 0.73, "mt10_sac_care": 0.84}
LABELS = {"mt10_sac": "MT-SAC", "mt10_sac_pcgrad": "PCGrad", "mt10_sac_soft_modular": "Soft modularization",
          "mt10_sac_care": "CARE"}
# The same for every arm: what fits 2 shared CPU cores (the papers: 3 x 400 networks, batch 1,280,
# one update per 10 env steps). Networks 2 x 256, batch 512, one update per 40 env steps.
BUDGET = ["model.hidden=[256,256]", "sac.train_batch_size=512", "rl.rollout_fragment_length=20",
          "sac.training_intensity=12.8", "sac.learning_starts=5000", "sac.env_steps_per_iteration=10000",
          "training.checkpoint_every=5", "training.plot_every=10"]


def train_arm(config: str, seed: int, env_steps: int, run_dir: Path, log: Path, extra: list[str] = ()) -> dict:
    """`mto train` one arm in its own process (``extra``: --set values after `BUDGET`); wall time and exit code."""
    iterations = -(-env_steps // 10_000)
    name = f"{config}-seed{seed}"
    cmd = [sys.executable, "-m", "orchestrator.cli", "train", str(REPO / "configs" / f"{config}.yaml"), "--no-live",
           "--run-dir", str(run_dir), "--set", f"seed={seed}", "--set", f"training.iterations={iterations}",
           "--set", f"name={name}", *[a for s in [*BUDGET, *extra] for a in ("--set", s)]]
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    return {"config": config, "seed": seed, "name": name, "exit_code": code, "command": " ".join(cmd[2:]),
            "wall_seconds": time.perf_counter() - started, "log": str(log)}


def finished_run(run_dir: Path, name: str):
    """The newest FINISHED MLflow run of config name ``name`` in ``run_dir``'s store (mto names runs
    ``<name>-<time>-<id>``), or None."""
    from mlflow.tracking import MlflowClient

    from orchestrator.runs.tracking import default_tracking_uri

    if not (run_dir / "mlflow.db").exists():
        return None
    client = MlflowClient(default_tracking_uri(run_dir))
    experiment = client.get_experiment_by_name("mto")
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"attributes.run_name LIKE '{name}-%' AND attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def read_run(run_dir: Path, name: str) -> tuple[str, dict]:
    """The finished run of ``name``: its id and, per iteration, env steps and per-task success."""
    from mlflow.tracking import MlflowClient

    from orchestrator.runs.tracking import default_tracking_uri

    client = MlflowClient(default_tracking_uri(run_dir))
    run = finished_run(run_dir, name)
    run_id = run.info.run_id
    steps = client.get_metric_history(run_id, "env_steps_total")
    tasks = sorted(k.split("/", 1)[1] for k in run.data.metrics if k.startswith("success_rate/"))
    success = {t: {m.step: m.value for m in client.get_metric_history(run_id, f"success_rate/{t}")} for t in tasks}
    rate = [m.value for m in client.get_metric_history(run_id, "env_steps_per_second")]
    curve = {"iteration": [m.step for m in steps], "env_steps": [m.value for m in steps],
             "mean_success": [statistics.fmean(success[t].get(m.step, 0.0) for t in tasks) for m in steps],
             "success": {t: [success[t].get(m.step, 0.0) for m in steps] for t in tasks},
             "progress_line_env_steps_per_second_median": statistics.median(rate) if rate else None}
    return run_id, curve


def plot(rows: list[dict], out: Path) -> None:
    """Mean training success against env steps, one line per method (band: min-max over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2))
    top = 0.0
    for config in PUBLISHED:
        runs = [r for r in rows if r["config"] == config and r.get("curve")]
        if not runs:
            continue
        n = min(len(r["curve"]["env_steps"]) for r in runs)
        x = np.asarray(runs[0]["curve"]["env_steps"][:n]) / 1e3
        ys = np.asarray([r["curve"]["mean_success"][:n] for r in runs])
        top = max(top, float(ys.max()))
        line, = ax.plot(x, ys.mean(axis=0), label=f"{LABELS[config]} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
        if len(runs) > 1:
            ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps (thousands, all 10 tasks)")
    ax.set_ylabel("mean training success (10 tasks)")
    ax.set_ylim(0, max(0.2, 1.2 * top))  # the papers' 0.49-0.84 are far above this budget's curves
    ax.set_title("Meta-World MT10, equal env-step budgets (published, 20M steps: 0.49-0.84)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def summarise(rows: list[dict]) -> list[dict]:
    """Per method: eval success per task and mean, mean [min-max] over seeds."""
    table = []
    for config in PUBLISHED:
        runs = [r for r in rows if r["config"] == config and r.get("eval_success")]
        if not runs:
            continue
        tasks = list(runs[0]["eval_success"])
        means = [statistics.fmean(r["eval_success"].values()) for r in runs]
        table.append({"config": config, "method": LABELS[config], "seeds": [r["seed"] for r in runs],
                      "mean_success": statistics.fmean(means), "min": min(means), "max": max(means),
                      "per_task": {t: statistics.fmean(r["eval_success"][t] for r in runs) for t in tasks},
                      "published": PUBLISHED[config]})
    return table


def print_table(report: dict) -> None:
    table = report["table"]
    print(f"\nMT10, {report['env_steps_per_run']:,} env steps per run "
          f"({report['env_steps_per_run'] / 20e6:.2%} of the papers' 20M); greedy evaluation, "
          f"{report['eval_episodes_per_task']} episodes per task")
    print("| method | seeds | mean success [min-max] | published (20M steps) |")
    print("| --- | ---: | ---: | ---: |")
    for t in table:
        spread = f" [{t['min']:.2f}-{t['max']:.2f}]" if len(t["seeds"]) > 1 else ""
        print(f"| {t['method']} | {len(t['seeds'])} | {t['mean_success']:.2f}{spread} | {t['published']:.2f} |")
    if table:
        print("\n| task | " + " | ".join(t["method"] for t in table) + " |")
        print("| --- |" + " ---: |" * len(table))
        for task in table[0]["per_task"]:
            print(f"| {task} | " + " | ".join(f"{t['per_task'][task]:.2f}" for t in table) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-steps", type=int, default=250_000, help="env steps per run (all 10 tasks together)")
    parser.add_argument("--arms", nargs="+", default=ARMS, help="config:seed pairs")
    parser.add_argument("--eval-episodes", type=int, default=10, help="fresh greedy episodes per task at the end")
    parser.add_argument("--run-dir", default="runs-mt10", help="where the runs and their MLflow store live")
    parser.add_argument("--out", default=str(RESULTS / "mt10_learning.json"))
    parser.add_argument("--combine", nargs="+", metavar="REPORT", help="merge these reports' arms into --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override for every arm, after the budget settings (e.g. sac.training_intensity=51.2)")
    args = parser.parse_args()
    if args.combine:
        return combine([Path(p) for p in args.combine], Path(args.out))
    import orchestrator

    run_dir = Path(args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    report = {"env_steps_per_run": args.env_steps, "budget_settings": BUDGET + args.overrides,
              "eval_episodes_per_task": args.eval_episodes,
              "machine": "2 shared AMD EPYC cores, no GPU", "rows": rows, "table": []}
    for arm in args.arms:
        config, seed = arm.split(":")
        name = f"{config}-seed{seed}"
        done = finished_run(run_dir, name)
        if done is not None:  # a rerun with the same --run-dir continues: trained arms are evaluated, not retrained
            row = {"config": config, "seed": int(seed), "name": name, "exit_code": 0, "reused_run": done.info.run_id,
                   "wall_seconds": (done.info.end_time - done.info.start_time) / 1000}
        else:
            row = train_arm(config, int(seed), args.env_steps, run_dir, run_dir / f"{name}.log", args.overrides)
        print(f"{row['name']}: exit {row['exit_code']}, {row['wall_seconds']:.0f} s", flush=True)
        if row["exit_code"] == 0:
            row["run_id"], row["curve"] = read_run(run_dir, row["name"])
            started = time.perf_counter()
            row["eval_success"] = orchestrator.evaluate(row["run_id"], episodes=args.eval_episodes, greedy=True,
                                                        seed=10_000, run_dir=run_dir)
            row["eval_seconds"] = time.perf_counter() - started
            row["best_training_mean_success"] = max(row["curve"]["mean_success"], default=0.0)
            print(f"  eval mean success {statistics.fmean(row['eval_success'].values()):.2f}", flush=True)
        rows.append(row)
        report["table"] = summarise(rows)
        out.write_text(json.dumps(report, indent=2))
    png = out.with_suffix(".png")
    plot(rows, png)
    print_table(report)
    _log_comparison(run_dir, out, png)
    print(f"wrote {out} and {png}")


def combine(reports: list[Path], out: Path) -> None:
    """One report (JSON, table, PNG) from the arms of several runs of this benchmark at the same budget."""
    parts = [json.loads(p.read_text()) for p in reports]
    if len({(p["env_steps_per_run"], tuple(p["budget_settings"])) for p in parts}) != 1:
        raise SystemExit(f"the reports {[str(p) for p in reports]} ran different budgets; only equal ones combine")
    report = {**parts[0], "rows": [row for p in parts for row in p["rows"]], "combined_from": [str(p) for p in reports]}
    report["table"] = summarise(report["rows"])
    out.write_text(json.dumps(report, indent=2))
    plot(report["rows"], out.with_suffix(".png"))
    print_table(report)
    print(f"wrote {out} and {out.with_suffix('.png')}")


def _log_comparison(run_dir: Path, report: Path, png: Path) -> None:
    import mlflow

    from orchestrator.runs.tracking import default_tracking_uri

    mlflow.set_tracking_uri(default_tracking_uri(run_dir))
    mlflow.set_experiment("mto")
    with mlflow.start_run(run_name="mt10-comparison"):
        mlflow.log_artifact(str(png))
        mlflow.log_artifact(str(report))


if __name__ == "__main__":
    main()
