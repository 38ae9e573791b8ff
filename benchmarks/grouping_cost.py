"""What task affinity grouping (TAG) costs, against the pairwise-training search it replaces.

On ``grouped_regression`` (9 tasks, 3 planted conflicting groups), same network,
data, seed and epoch budget everywhere (the settings of configs/grouped_regression_tag.yaml):

- plain co-training: every task in one network, no measurement;
- TAG: the same co-training with the lookahead affinity measured every
  ``affinity_every`` steps, grouping selection, then the top-K candidate
  groupings trained (one network per group);
- pairwise search (Standley et al. 2020, the baseline TAG replaces): one network per
  single task and per pair of tasks (9 + 36 networks); pairwise affinity
  ``1 - L_j(pair i,j) / L_j(alone)`` feeds the same grouping selection, then the
  same top-K candidates are trained.

Reports wall time of each search (trainings run one after the other in this
process, one torch thread: the compute each search needs, which Ray Tune spreads
over the cluster), the overhead of measuring affinity over plain co-training,
and the quality of each search's chosen grouping: total validation loss (sum over
tasks, each from its best group) and the adjusted Rand index against the planted groups.

Run: ``python -m benchmarks.grouping_cost [--epochs 30] [--seeds 0 1 2]``;
writes ``benchmarks/results/grouping_cost.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from curricula.grouping import choose_groupings
from orchestrator.supervised.training import train_supervised_local
from tasks.supervised import read_dataset, write_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "grouping_cost.json"
NETWORK = dict(architecture="soft_modular", combiner="sum", hidden=(32, 32), batch_size=1024, lr=1e-2)


def train(path: Path, epochs: int, seed: int, tasks=None, **kwargs) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    result = train_supervised_local(dataset_path=path, epochs=epochs, seed=seed, tasks=tasks, **NETWORK, **kwargs)
    return result.final_metrics, time.perf_counter() - started


def train_grouping(path: Path, groups, epochs: int, seed: int) -> tuple[float, float]:
    """(total validation loss with each task from its best group, wall seconds)."""
    best: dict[str, float] = {}
    seconds = 0.0
    for group in groups:
        metrics, took = train(path, epochs, seed, tasks=list(group))
        seconds += took
        for n in group:
            best[n] = min(best.get(n, np.inf), metrics[f"val/loss/{n}"])
    return float(sum(best.values())), seconds


def search(path: Path, names, planted, affinity: np.ndarray, args) -> dict:
    candidates = choose_groupings(affinity, names, args.max_groups, top_k=args.top_k)
    trained = [(c, *train_grouping(path, c.groups, args.epochs, args.seed_now)) for c in candidates]
    chosen, loss, _ = min(trained, key=lambda t: t[1])
    label = {n: g for g, grp in enumerate(planted) for n in grp}
    return {
        "chosen_groups": [list(g) for g in chosen.groups],
        "val_loss_total": loss,
        "adjusted_rand_index": float(adjusted_rand_score([label[n] for n in names], chosen.labels(names))),
        "candidate_training_s": sum(t[2] for t in trained),
    }


def run_seed(seed: int, args, folder: Path) -> dict:
    path = write_dataset("grouped_regression", folder / f"seed{seed}", seed=seed)
    data = read_dataset(path)
    names, planted = data.task_space.names, data.metadata["groups"]
    args.seed_now = seed

    train(path, 2, seed)  # warm-up: first-call costs (allocator, kernels) are not the method's
    # Plain and measuring co-training alternate, best of `repeats` each: the machine is shared.
    plain_s, tag_cotrain_s = np.inf, np.inf
    for _ in range(args.repeats):
        plain, took = train(path, args.epochs, seed)
        plain_s = min(plain_s, took)
        with_affinity, took = train(path, args.epochs, seed, affinity_every=args.affinity_every, affinity_lr=1e-3)
        tag_cotrain_s = min(tag_cotrain_s, took)
    affinity = np.array([[with_affinity.get(f"affinity/{a}/{b}", 0.0) for b in names] for a in names])
    tag = search(path, names, planted, affinity, args)
    tag["search_s"] = tag_cotrain_s + tag["candidate_training_s"]

    started = time.perf_counter()
    alone = {n: train(path, args.epochs, seed, tasks=[n])[0][f"val/loss/{n}"] for n in names}
    pair_affinity = np.zeros((len(names), len(names)))
    for i, j in itertools.combinations(range(len(names)), 2):
        metrics, _ = train(path, args.epochs, seed, tasks=[names[i], names[j]])
        pair_affinity[i, j] = 1 - metrics[f"val/loss/{names[j]}"] / alone[names[j]]
        pair_affinity[j, i] = 1 - metrics[f"val/loss/{names[i]}"] / alone[names[i]]
    pairwise_training_s = time.perf_counter() - started
    pairwise = search(path, names, planted, pair_affinity, args)
    pairwise["search_s"] = pairwise_training_s + pairwise["candidate_training_s"]
    planted_loss, _ = train_grouping(path, planted, args.epochs, seed)
    return {
        "seed": seed,
        "plain_cotraining_s": plain_s,
        "affinity_cotraining_s": tag_cotrain_s,
        "affinity_measurement_s": with_affinity["affinity_time_s"],
        "affinity_overhead": tag_cotrain_s / plain_s - 1,
        # The lookahead's own time against the rest of the same run: immune to load swings between runs.
        "affinity_overhead_in_run": with_affinity["affinity_time_s"] / (tag_cotrain_s - with_affinity["affinity_time_s"]),
        "all_together_val_loss_total": float(sum(plain[f"val/loss/{n}"] for n in names)),
        "planted_val_loss_total": planted_loss,
        "tag": tag,
        "pairwise": pairwise,
        "speedup": pairwise["search_s"] / tag["search_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--affinity-every", type=int, default=8)
    parser.add_argument("--max-groups", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="plain / measuring co-training runs each (best taken)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_seed(seed, args, Path(tmp)) for seed in args.seeds]

    print(f"{'seed':>4} {'plain s':>8} {'+affinity s':>11} {'overhead':>8} {'in-run':>6} {'TAG s':>7} {'pairwise s':>10} "
          f"{'speedup':>7} {'TAG loss':>8} {'pair loss':>9} {'together':>8} {'planted':>8} {'ARI TAG':>7} {'ARI pair':>8}")
    for r in rows:
        print(f"{r['seed']:>4} {r['plain_cotraining_s']:>8.2f} {r['affinity_cotraining_s']:>11.2f} "
              f"{100 * r['affinity_overhead']:>7.1f}% {100 * r['affinity_overhead_in_run']:>5.1f}% {r['tag']['search_s']:>7.1f} {r['pairwise']['search_s']:>10.1f} "
              f"{r['speedup']:>6.1f}x {r['tag']['val_loss_total']:>8.3f} {r['pairwise']['val_loss_total']:>9.3f} "
              f"{r['all_together_val_loss_total']:>8.3f} {r['planted_val_loss_total']:>8.3f} "
              f"{r['tag']['adjusted_rand_index']:>7.2f} {r['pairwise']['adjusted_rand_index']:>8.2f}")
    summary = {
        "median_affinity_overhead": float(np.median([r["affinity_overhead"] for r in rows])),
        "median_affinity_overhead_in_run": float(np.median([r["affinity_overhead_in_run"] for r in rows])),
        "median_tag_search_s": float(np.median([r["tag"]["search_s"] for r in rows])),
        "median_pairwise_search_s": float(np.median([r["pairwise"]["search_s"] for r in rows])),
        "tag_finds_planted_groups": sum(r["tag"]["adjusted_rand_index"] == 1.0 for r in rows),
        "pairwise_finds_planted_groups": sum(r["pairwise"]["adjusted_rand_index"] == 1.0 for r in rows),
        "median_speedup": float(np.median([r["speedup"] for r in rows])),
        "mean_tag_val_loss_total": float(np.mean([r["tag"]["val_loss_total"] for r in rows])),
        "mean_pairwise_val_loss_total": float(np.mean([r["pairwise"]["val_loss_total"] for r in rows])),
        "mean_all_together_val_loss_total": float(np.mean([r["all_together_val_loss_total"] for r in rows])),
        "mean_planted_val_loss_total": float(np.mean([r["planted_val_loss_total"] for r in rows])),
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "grouping_cost",
        "dataset": "grouped_regression (9 tasks, 3 planted groups)",
        "network": {k: list(v) if isinstance(v, tuple) else v for k, v in NETWORK.items()},
        "epochs": args.epochs, "affinity_every": args.affinity_every, "max_groups": args.max_groups,
        "top_k": args.top_k, "torch_threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "note": "wall times: trainings one after another in one process; the machine is shared (load varies)",
        "summary": summary, "runs": rows,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
