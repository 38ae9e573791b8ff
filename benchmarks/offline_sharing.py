"""Offline multi-task RL: `none` vs `all` vs `cds` data sharing on two datasets, at equal gradient steps.

    python -m benchmarks.offline_sharing [--steps 2000] [--seeds 0 1 2] [--episodes 20]
        [--modes none all cds] [--datasets help:configs/offline_cds.yaml hurt:configs/offline_conflict_cds.yaml]
        [--dataset-root runs/datasets/offline_sharing_bench] [--out benchmarks/results/offline_sharing.json]

Two datasets, each collected once on a local Ray from its config's behaviour sources:

- ``help`` (configs/offline_cds.yaml): expert data (the scripted tech-tree player, skill 0.9)
  only for the deep tasks, random-policy data for the four shallow ones; the expert episodes
  obtain the shallow items on the way, so sharing everything is right here;
- ``hurt`` (configs/offline_conflict_cds.yaml): every task has its own good data, but the log
  player's data is ten times larger and, relabeled for dirt / sand / red_flower, earns them
  nothing while taking the log player's actions: sharing everything hurts here.

For each dataset, mode and seed one CQL network is trained for the same number of gradient
steps on batches of the same own-data size (shared candidates on top) and evaluated greedily
online (``--episodes`` fresh episodes per task). Prints per-task and mean success (mean
[min-max] over seeds), the sharing summary (accepted fraction of relabeled transitions that
carry the target's reward vs those that do not; for cds the mean Q of each and the mean
threshold they were compared with), samples/s, and writes the JSON.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from orchestrator.runs.local_ray import secure_local_ray  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "offline_sharing.json"
DATASETS = ["help:configs/offline_cds.yaml", "hurt:configs/offline_conflict_cds.yaml"]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def _mean_of(runs: list[dict], task: str, key: str) -> float | None:
    vals = [r["sharing_summary"][task][key] for r in runs if r["sharing_summary"][task][key] is not None]
    return float(np.mean(vals)) if vals else None


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def run_dataset(label: str, config: str, root: Path, args) -> dict:
    """Collect one dataset, train every mode x seed on it, print its tables; returns its JSON part."""
    from orchestrator.config import load_config
    from orchestrator.offline.collection import collect
    from orchestrator.offline.training import run_offline

    dataset = root / label
    cfg = load_config(config, [f"offline.dataset={dataset}"])
    t0 = time.perf_counter()
    collection = collect(cfg, overwrite=True)
    print(f"[{label}] collection: {collection.transitions:,} transitions in {time.perf_counter() - t0:.1f} s", flush=True)
    runs: list[dict] = []
    for mode in args.modes:
        for seed in args.seeds:
            overrides = [f"offline.dataset={dataset}", f"offline.sharing={mode}", f"seed={seed}",
                         f"offline.gradient_steps={args.steps}", f"offline.eval_every={args.steps}",
                         f"offline.checkpoint_every={args.steps}", f"offline.eval_episodes_per_task={args.episodes}",
                         f"offline.log_every={args.steps}", f"offline.torch_threads={args.threads}"]
            run_cfg = load_config(config, overrides)
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                result = run_offline(run_cfg, Path(tmp), live=False, log=False)
                seconds = time.perf_counter() - t
            runs.append({
                "mode": mode, "seed": seed, "success_rate": result["success_rate"], "mean_success": result["mean_success"],
                "seconds": seconds, "sharing_summary": result["sharing_summary"],
                "train_samples_per_second": result["rows_trained"] / max(result["sample_seconds"] + result["update_seconds"], 1e-9),
                "samples_per_step": result["rows_trained"] / args.steps,
                "sharing_matrix": [[None if np.isnan(x) else round(float(x), 4) for x in row] for row in result["sharing_matrix"]],
            })
            print(f"[{label}] {mode:>9} seed {seed}: mean success {result['mean_success']:.3f} ({seconds:.0f} s)", flush=True)

    names = list(runs[0]["success_rate"])
    card = json.loads((dataset / "dataset_card.json").read_text())
    behaviour = {t: b["id"] for b in card["behaviour"] for t in (b["tasks"] or names)}
    summary: dict[str, dict] = {}
    for mode in args.modes:
        mine = [r for r in runs if r["mode"] == mode]
        means = [r["mean_success"] for r in mine]
        summary[mode] = {
            "per_task_mean": {n: float(np.mean([r["success_rate"][n] for r in mine])) for n in names},
            "mean_success": float(np.mean(means)), "mean_success_min": float(min(means)), "mean_success_max": float(max(means)),
            "train_samples_per_second": float(np.median([r["train_samples_per_second"] for r in mine])),
            "samples_per_step": float(np.mean([r["samples_per_step"] for r in mine])),
            "sharing": {n: {k: _mean_of(mine, n, k) for k in ("accepted_rewarding", "accepted_other", "q_rewarding",
                                                               "q_other", "threshold")} for n in names},
        }
    print(f"\n[{label}] {config}: greedy success per task, mean over seeds {args.seeds} "
          f"({args.steps} gradient steps, {args.episodes} episodes per task)")
    print(f"{'task':<22}" + "".join(f"{m:>20}" for m in args.modes) + "   data")
    for n in names:
        print(f"{n:<22}" + "".join(f"{summary[m]['per_task_mean'][n]:>20.2f}" for m in args.modes) + f"   {behaviour.get(n, '')}")
    print(f"{'mean [min-max]':<22}" + "".join(f"{_spread([r['mean_success'] for r in runs if r['mode'] == m]):>20}"
                                               for m in args.modes))
    print(f"{'samples/step':<22}" + "".join(f"{summary[m]['samples_per_step']:>20.0f}" for m in args.modes))
    print(f"{'train samples/s':<22}" + "".join(f"{summary[m]['train_samples_per_second']:>20,.0f}" for m in args.modes))
    for m in [m for m in args.modes if m != "none"]:
        print(f"\n[{label}] sharing ({m}): accepted fraction of relabeled candidates, with / without the target's reward"
              + ("; mean Q of each and the threshold" if m.startswith("cds") else ""))
        for n in names:
            s = summary[m]["sharing"][n]
            line = f"  {n:<20} reward {_fmt(s['accepted_rewarding'])}  no reward {_fmt(s['accepted_other'])}"
            if m.startswith("cds"):
                line += f"   Q reward {_fmt(s['q_rewarding'], '+.2f')}  Q no reward {_fmt(s['q_other'], '+.2f')}  threshold {_fmt(s['threshold'], '+.2f')}"
            print(line)
    return {"config": config, "dataset": {k: card[k] for k in ("transitions", "episodes", "transitions_per_task", "behaviour", "horizon")},
            "collection_seconds": collection.seconds, "summary": summary, "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="label:config pairs")
    parser.add_argument("--dataset-root", default="runs/datasets/offline_sharing_bench")
    parser.add_argument("--steps", type=int, default=2000, help="gradient steps per run (equal for every mode)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--modes", nargs="+", default=["none", "all", "cds"])
    parser.add_argument("--episodes", type=int, default=20, help="greedy evaluation episodes per task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1, for the Ray the runs start

    t0 = time.perf_counter()
    parts = {}
    for item in args.datasets:
        label, _, config = item.partition(":")
        parts[label] = run_dataset(label, config, Path(args.dataset_root), args)
    print("\nTarget (Yu et al. 2021): cds mean success >= max(none, all) - 0.05 on each dataset")
    for label, part in parts.items():
        s = part["summary"]
        if {"none", "all", "cds"} <= set(s):
            best = max(s["none"]["mean_success"], s["all"]["mean_success"])
            verdict = "met" if s["cds"]["mean_success"] >= best - 0.05 else "missed"
            print(f"  {label}: cds {s['cds']['mean_success']:.3f} vs max(none, all) {best:.3f} - 0.05 -> {verdict}")
    seconds = time.perf_counter() - t0
    print(f"total {seconds / 60:.1f} min")
    out = {"gradient_steps": args.steps, "seeds": args.seeds, "modes": args.modes, "eval_episodes_per_task": args.episodes,
           "torch_threads": args.threads, "machine": {"cpu": _cpu(), "cpus": os.cpu_count()}, "seconds": seconds,
           "datasets": parts}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
