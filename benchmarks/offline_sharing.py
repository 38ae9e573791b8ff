"""Offline multi-task RL: `none` vs `all` vs `cds` data sharing at equal gradient steps, plus throughput.

    python -m benchmarks.offline_sharing [--config configs/offline_cds.yaml] [--steps 3000]
        [--seeds 0 1 2] [--episodes 20] [--percentiles 50 10] [--dataset runs/datasets/offline_sharing_bench]

The dataset (collected once, on a local Ray, with the config's behaviour sources): expert
data (the scripted tech-tree player, skill 0.9) only for the deep tasks, random-policy data
only for the shallow ones. For each sharing mode and seed, one CQL network is trained for the
same number of gradient steps on batches of the same own-data size (shared candidates on
top) and evaluated greedily online (``--episodes`` fresh episodes per task). Prints per-task
and mean success (mean +- std over seeds), collection transitions/s, Parquet read rows/s,
the batch builder's samples/s per mode, and writes ``benchmarks/results/offline_sharing.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "offline_sharing.json"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/offline_cds.yaml")
    parser.add_argument("--dataset", default="runs/datasets/offline_sharing_bench")
    parser.add_argument("--steps", type=int, default=3000, help="gradient steps per run (equal for every mode)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=20, help="greedy evaluation episodes per task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--percentiles", type=float, nargs="+", default=[50.0, 10.0],
                        help="cds percentiles k to compare (one column each)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    from orchestrator.config import load_config
    from orchestrator.offline.collection import collect
    from orchestrator.offline.training import run_offline

    base = ["--set", f"offline.dataset={args.dataset}"]
    cfg = load_config(args.config, [base[1]])
    t0 = time.perf_counter()
    collection = collect(cfg, overwrite=True)
    print(f"collection: {collection.transitions:,} transitions in {time.perf_counter() - t0:.1f} s "
          f"(Ray tasks only: {collection.transitions_per_second:,.0f} transitions/s)")

    variants = [("none", "none", None), ("all", "all", None)] + [(f"cds k={k:g}", "cds", k) for k in args.percentiles]
    runs: list[dict] = []
    for label, mode, k in variants:
        for seed in args.seeds:
            overrides = [base[1], f"offline.sharing={mode}", f"seed={seed}", f"offline.gradient_steps={args.steps}",
                         *([f"offline.percentile={k}"] if k is not None else []),
                         f"offline.eval_every={args.steps}", f"offline.eval_episodes_per_task={args.episodes}",
                         f"offline.log_every={args.steps}", f"offline.torch_threads={args.threads}"]
            run_cfg = load_config(args.config, overrides)
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                result = run_offline(run_cfg, Path(tmp), live=False, log=False)
                seconds = time.perf_counter() - t
            offered = result["sharing_matrix"]
            runs.append({
                "mode": label, "seed": seed, "success_rate": result["success_rate"], "mean_success": result["mean_success"],
                "seconds": seconds, "load_rows_per_second": result["load_rows_per_second"],
                "loader_samples_per_second": result["rows_trained"] / max(result["sample_seconds"], 1e-9),
                "train_samples_per_second": result["rows_trained"] / max(result["sample_seconds"] + result["update_seconds"], 1e-9),
                "samples_per_step": result["rows_trained"] / args.steps,
                "sharing_matrix": [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in offered],
            })
            print(f"{label:>9} seed {seed}: mean success {result['mean_success']:.3f} ({seconds:.0f} s)", flush=True)

    names = list(runs[0]["success_rate"])
    labels = [label for label, _, _ in variants]
    summary: dict[str, dict] = {}
    for mode in labels:
        mine = [r for r in runs if r["mode"] == mode]
        per_task = {n: [r["success_rate"][n] for r in mine] for n in names}
        means = [r["mean_success"] for r in mine]
        summary[mode] = {
            "per_task_mean": {n: float(np.mean(v)) for n, v in per_task.items()},
            "mean_success": float(np.mean(means)), "mean_success_std": float(np.std(means)),
            "loader_samples_per_second": float(np.median([r["loader_samples_per_second"] for r in mine])),
            "train_samples_per_second": float(np.median([r["train_samples_per_second"] for r in mine])),
            "samples_per_step": float(np.mean([r["samples_per_step"] for r in mine])),
        }

    card = json.loads((Path(args.dataset) / "dataset_card.json").read_text())
    header = f"{'task':<16}" + "".join(f"{m:>14}" for m in labels) + "   data"
    behaviour = {t: b["id"] for b in card["behaviour"] for t in (b["tasks"] or names)}
    print(f"\nGreedy success per task, mean over seeds {args.seeds} ({args.steps} gradient steps, {args.episodes} episodes per task)")
    print(header)
    for n in names:
        print(f"{n:<16}" + "".join(f"{summary[m]['per_task_mean'][n]:>14.2f}" for m in labels) + f"   {behaviour.get(n, '')}")
    print(f"{'mean':<16}" + "".join(f"{summary[m]['mean_success']:>8.3f}+-{summary[m]['mean_success_std']:.3f}" for m in labels))
    print(f"{'samples/step':<16}" + "".join(f"{summary[m]['samples_per_step']:>14.0f}" for m in labels))
    print(f"{'loader samples/s':<16}" + "".join(f"{summary[m]['loader_samples_per_second']:>14,.0f}" for m in labels))
    print(f"{'train samples/s':<16}" + "".join(f"{summary[m]['train_samples_per_second']:>14,.0f}" for m in labels))
    read_rate = float(np.median([r["load_rows_per_second"] for r in runs]))
    print(f"Parquet read (whole dataset, schema checked): {read_rate:,.0f} rows/s; "
          f"collection to Parquet: {collection.transitions_per_second:,.0f} transitions/s")

    out = {
        "config": args.config, "gradient_steps": args.steps, "seeds": args.seeds, "eval_episodes_per_task": args.episodes,
        "torch_threads": args.threads, "machine": {"cpu": _cpu(), "cpus": os.cpu_count()},
        "dataset": {k: card[k] for k in ("transitions", "episodes", "transitions_per_task", "behaviour", "horizon")},
        "collection_transitions_per_second": collection.transitions_per_second,
        "collection_seconds": collection.seconds,
        "parquet_read_rows_per_second": read_rate,
        "summary": summary, "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
