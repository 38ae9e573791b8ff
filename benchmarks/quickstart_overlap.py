"""Learning at equal env steps with and without overlapped sampling: the quickstart, 3 seeds each.

Each run is `mto train configs/quickstart.yaml --set seed=<k>` as a user runs it (a subprocess,
its own local Ray), the shipped config (one EnvRunner sampling while the learner updates,
policy lag 1) against the same config sampling in the driver (``rl.num_env_runners=0``,
``rl.overlap_sampling=false``: no lag, one core). Both stop at the config's 150 iterations
(2.46M env steps). Reported per arm: items mastered and mean success (the run's last online
success rates, what the final table of `mto train` prints), the wall time of the whole command,
the median env-steps/s of its progress line and the policy lag. ``--repeat`` runs the first
seed of the first arm a second time and compares every logged metric history (reproducibility).

    python -m benchmarks.quickstart_overlap [--seeds 0 1 2] [--arms overlapped driver] [--repeat]
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
MASTERY = 0.9  # the quickstart's training.mastery_threshold
ARMS = {
    "overlapped": [],  # as shipped
    "driver": ["rl.num_env_runners=0", "rl.overlap_sampling=false"],
}


def run_quickstart(seed: int, overrides: list[str], run_dir: Path) -> dict:
    """One `mto train configs/quickstart.yaml` run; what its final table and progress line showed."""
    import mlflow

    uri = f"sqlite:///{run_dir}/mlflow.db"
    sets = [a for o in [f"seed={seed}", *overrides] for a in ("--set", o)]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "train", str(REPO / "configs" / "quickstart.yaml"),
                    "--no-live", "--run-dir", str(run_dir), *sets], check=True,
                   env={**os.environ, "MLFLOW_TRACKING_URI": uri}, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    client = mlflow.MlflowClient(uri)
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    metrics = run.data.metrics
    success = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("success_rate/")}
    rates = [m.value for m in client.get_metric_history(run.info.run_id, "env_steps_per_second")]
    histories = {key: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key),
                                                         key=lambda m: m.step)]
                 for key in metrics if not key.startswith(("env_steps_per_second", "iteration_seconds"))}
    return {"seed": seed, "wall_s": wall, "env_steps": metrics["env_steps_total"],
            "mastered": int(metrics["items_mastered"]), "mean_success": metrics["mean_success"],
            "mastered_items": sorted(t for t, s in success.items() if s >= MASTERY), "success": success,
            "progress_line_env_steps_per_s": statistics.median(rates[2:]),
            "policy_lag_max": max((v for _, v in histories.get("policy_lag", [])), default=0.0),
            "_histories": histories}


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(sum(values) / len(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--repeat", action="store_true", help="run the first arm's first seed twice, compare histories")
    args = parser.parse_args()
    from orchestrator.runs.local_ray import secure_local_ray

    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1; `mto` below inherits it
    runs: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    repeat = None
    with tempfile.TemporaryDirectory() as tmp:
        for arm in args.arms:
            for seed in args.seeds:
                runs[arm].append(run_quickstart(seed, ARMS[arm], Path(tmp) / f"{arm}-{seed}"))
                print(f"{arm} seed {seed}: {runs[arm][-1]['mastered']}/20 mastered, {runs[arm][-1]['wall_s']:.0f} s",
                      flush=True)
        if args.repeat:
            again = run_quickstart(args.seeds[0], ARMS[args.arms[0]], Path(tmp) / "repeat")
            first = runs[args.arms[0]][0]["_histories"]
            same = [k for k in first if again["_histories"].get(k) == first[k]]
            repeat = {"arm": args.arms[0], "seed": args.seeds[0], "identical_histories": len(same),
                      "histories": len(first), "differing": sorted(set(first) - set(same))[:20]}
    print(f"{'arm':<11} {'seeds':>5} {'items mastered':>16} {'mean success':>20} {'wall s':>18} "
          f"{'progress line steps/s':>24} {'lag':>4}")
    table = []
    for arm, rows in runs.items():
        line = {"arm": arm, "overrides": ARMS[arm], "seeds": [r["seed"] for r in rows],
                "mastered": [r["mastered"] for r in rows], "mean_success": [r["mean_success"] for r in rows],
                "wall_s": [r["wall_s"] for r in rows],
                "progress_line_env_steps_per_s": [r["progress_line_env_steps_per_s"] for r in rows],
                "policy_lag_max": max(r["policy_lag_max"] for r in rows),
                "not_mastered": [sorted(set(r["success"]) - set(r["mastered_items"])) for r in rows],
                "env_steps": [r["env_steps"] for r in rows]}
        table.append(line)
        print(f"{arm:<11} {len(rows):>5} {spread(line['mastered']):>16} {spread(line['mean_success'], '{:.3f}'):>20} "
              f"{spread(line['wall_s'], '{:.0f}'):>18} {spread(line['progress_line_env_steps_per_s'], '{:,.0f}'):>24} "
              f"{line['policy_lag_max']:>4.0f}")
    if repeat:
        print(f"repeat of {repeat['arm']} seed {repeat['seed']}: {repeat['identical_histories']}/{repeat['histories']} "
              f"metric histories identical")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quickstart_overlap.json").write_text(json.dumps(
        {"table": table, "repeat": repeat,
         "runs": {arm: [{k: v for k, v in r.items() if k != "_histories"} for r in rows] for arm, rows in runs.items()},
         "machine": os.uname().nodename, "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
