"""Env-steps/s of a real `mto train` run against the number of EnvRunner actors and learners.

Every point is one `mto train` process (its own local Ray, its own MLflow store
on SQLite), run for a few iterations; the figure is the median of the
``env_steps_per_second`` MLflow metric the training loop logs, without the
first `--skip` iterations (actor start, compilation, SAC's learning_starts).

Axes:
- EnvRunner actors: 0 (sampling in the driver), 1, 2, 4, ... up to the machine's CPUs
  (each EnvRunner reserves one CPU, each Learner actor one more);
- learners: one learner in the driver (``rl.num_learners=0``, the shipped setting) and
  2 Learner actors (data-parallel); with CUDA, 1 (and 2 if there are two GPUs) GPU
  Learner actors (``rl.num_gpus_per_learner=1``).

Configs (as shipped except the axes; `overlap_sampling` off where there is no
EnvRunner): the Simon Says PPO quickstart (``configs/quickstart.yaml``) and
Meta-World MT10 SAC (``configs/mt10_sac.yaml`` with smaller iterations so a
point takes seconds, the settings `benchmarks.mt10` uses on 2 cores).

Efficiency against linear: throughput with n EnvRunners divided by n times the
throughput with one, for the same learners. Points run in priority order and
stop when `--budget-minutes` is spent (the rest are listed as skipped), so the
script finishes on time on a 2-core laptop and on a 16-core GPU machine alike.

    python -m benchmarks.scaling [--configs quickstart mt10_sac] [--iterations 4] [--budget-minutes 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS: dict[str, dict[str, Any]] = {
    "quickstart": {"file": "configs/quickstart.yaml", "overrides": ["training.plot_every=1000"]},
    "mt10_sac": {"file": "configs/mt10_sac.yaml", "overrides": [
        # benchmarks.mt10's 2-core settings, with 1,000 env steps per iteration so a point takes seconds
        "model.hidden=[256,256]", "sac.train_batch_size=512", "rl.rollout_fragment_length=20",
        "sac.training_intensity=12.8", "sac.learning_starts=1000", "sac.env_steps_per_iteration=1000",
        "training.plot_every=1000"]},
}


def cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def runner_counts(cpus: int, learner_actors: int) -> list[int]:
    """0, 1, 2, 4, ... while EnvRunners plus Learner actors fit in the CPUs (and the largest that fits)."""
    limit = cpus - learner_actors
    counts = [0] + [n for n in (2 ** k for k in range(10)) if n <= limit]
    if limit >= 1 and counts[-1] != limit:
        counts.append(limit)
    return counts


def learner_settings(gpus: int) -> list[dict[str, Any]]:
    settings = [{"label": "1 (driver)", "learners": 1, "actors": 0, "gpus": 0, "overrides": ["rl.num_learners=0"]},
                {"label": "2 actors", "learners": 2, "actors": 2, "gpus": 0,
                 "overrides": ["rl.num_learners=2", "rl.num_gpus_per_learner=0"]}]
    for n in range(1, min(gpus, 2) + 1):
        settings.append({"label": f"{n} GPU", "learners": n, "actors": n, "gpus": n,
                         "overrides": [f"rl.num_learners={n}", "rl.num_gpus_per_learner=1"]})
    return settings


def plan(configs: list[str], cpus: int, gpus: int) -> list[dict[str, Any]]:
    """Points in priority order, so a time budget cuts the least informative ones: per config, the
    EnvRunner sweep with the learner in the driver, then GPU learners at 0 EnvRunners and at the most
    that fit; then the 2-Learner-actor rows at those two counts; then everything in between."""
    first, second, rest = [], [], []
    for name in configs:
        later = []
        for learner in learner_settings(gpus):
            counts = runner_counts(cpus, learner["actors"])
            for runners in counts:
                point = {"config": name, "runners": runners, **learner}
                if learner["actors"] == 0 or (learner["gpus"] and runners in (0, counts[-1])):
                    first.append(point)
                elif runners in (0, counts[-1]):
                    later.append(point)
                else:
                    rest.append(point)
        second += later
    return first + second + rest


def overrides_for(point: dict[str, Any], iterations: int) -> list[str]:
    spec = CONFIGS[point["config"]]
    out = list(spec["overrides"]) + point["overrides"]
    out += [f"rl.num_env_runners={point['runners']}", f"training.iterations={iterations}",
            f"training.checkpoint_every={iterations}"]
    if point["runners"] == 0:
        # Overlap needs an EnvRunner to overlap with; with one or more the config's own setting stands.
        out.append("rl.overlap_sampling=false")
    return out


def run_point(point: dict[str, Any], iterations: int, skip: int, timeout_s: float) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="mto-scaling-") as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        cmd = [sys.executable, "-m", "orchestrator.cli", "train", str(REPO / CONFIGS[point["config"]]["file"]),
               "--no-live", "--run-dir", f"{tmp}/runs"]
        for override in overrides_for(point, iterations):
            cmd += ["--set", override]
        env = {**os.environ, "MLFLOW_TRACKING_URI": store}
        env.pop("RAY_ADDRESS", None)  # each point starts its own local Ray with this machine's CPUs
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {**point, "status": f"timed out after {timeout_s:.0f} s", "wall_s": time.perf_counter() - t0}
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {**point, "status": f"failed (exit {proc.returncode}): {' | '.join(tail)}", "wall_s": wall}
        client = MlflowClient(store)
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        history = sorted(client.get_metric_history(runs[0].info.run_id, "env_steps_per_second"), key=lambda m: m.step)
        rates = [m.value for m in history][skip:] or [m.value for m in history][-1:]
    return {**point, "status": "ok", "env_steps_per_second": statistics.median(rates), "iterations_counted": len(rates),
            "min": min(rates), "max": max(rates), "wall_s": wall}


def add_efficiency(rows: list[dict[str, Any]]) -> None:
    """Speed-up over the same config and learners with one EnvRunner, and that over n (linear = 1.0)."""
    for row in rows:
        if row.get("status") != "ok" or row["runners"] < 1:
            continue
        one = next((r for r in rows if r.get("status") == "ok" and r["config"] == row["config"]
                    and r["label"] == row["label"] and r["runners"] == 1), None)
        if one is not None:
            row["speedup_vs_1_runner"] = row["env_steps_per_second"] / one["env_steps_per_second"]
            row["efficiency_vs_linear"] = row["speedup_vs_1_runner"] / row["runners"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["quickstart", "mt10_sac"])
    parser.add_argument("--iterations", type=int, default=4, help="training iterations per point")
    parser.add_argument("--skip", type=int, default=1, help="first iterations not counted")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs the EnvRunner sweep may fill")
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="stop starting points after this long")
    parser.add_argument("--point-timeout", type=float, default=240.0, help="seconds before one point is abandoned")
    parser.add_argument("--out", default=str(RESULTS / "scaling.json"))
    args = parser.parse_args()
    if args.iterations < 1 or args.skip < 0 or args.cpus < 1:
        parser.error("--iterations and --cpus must be >= 1 and --skip >= 0")

    gpus = cuda_devices()
    points = plan(args.configs, args.cpus, gpus)
    started = time.monotonic()
    rows = []
    for point in points:
        left = args.budget_minutes * 60 - (time.monotonic() - started)
        if left < 20:
            rows.append({**point, "status": "skipped (time budget)"})
            continue
        rows.append(run_point(point, args.iterations, args.skip, min(args.point_timeout, left)))
        r = rows[-1]
        print(f"  {r['config']:<10} runners {r['runners']:>2} learners {r['label']:<10} "
              f"{r.get('env_steps_per_second', float('nan')):>10,.0f} env steps/s  ({r['status']}, {r['wall_s']:.0f} s)",
              flush=True)
    add_efficiency(rows)
    load = os.getloadavg()
    print(f"\nScaling of `mto train`: {platform.machine()}, {os.cpu_count()} CPUs, {gpus} CUDA GPU(s), "
          f"{args.iterations} iterations per point (first {args.skip} not counted), load {load[0]:.2f}")
    head = f"{'config':<11} {'EnvRunners':>10} {'learners':<11} {'env steps/s':>12} {'[min-max]':>19} {'vs 1 runner':>11} {'efficiency':>10}  status"
    print(head)
    print("-" * len(head))
    for r in sorted(rows, key=lambda r: (r["config"], r["label"], r["runners"])):
        if r.get("status") == "ok":
            span = f"[{r['min']:,.0f}-{r['max']:,.0f}]"
            speed = f"{r['speedup_vs_1_runner']:.2f}x" if "speedup_vs_1_runner" in r else ""
            eff = f"{r['efficiency_vs_linear']:.0%}" if "efficiency_vs_linear" in r else ""
            print(f"{r['config']:<11} {r['runners']:>10} {r['label']:<11} {r['env_steps_per_second']:>12,.0f} {span:>19} "
                  f"{speed:>11} {eff:>10}  ok")
        else:
            print(f"{r['config']:<11} {r['runners']:>10} {r['label']:<11} {'':>12} {'':>19} {'':>11} {'':>10}  {r['status']}")
    result = {"benchmark": "scaling", "settings": vars(args), "cpus": os.cpu_count(), "cuda_gpus": gpus,
              "machine": platform.platform(), "load_average": load, "wall_s": time.monotonic() - started, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
