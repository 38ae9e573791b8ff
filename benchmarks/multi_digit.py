"""Per-task test accuracy of each architecture x combiner on multi_digit.

Builds the multi_digit Parquet file (scikit-learn's 8x8 digits, no download;
``--mnist PATH`` for real MNIST IDX files), trains every architecture with
every combiner on the same data, seed and budget, and reports for each run
the parameter counts (shared / task-specific) and the per-task test accuracy
at the last epoch and at the epoch with the best mean validation accuracy.

By default runs in this process (``orchestrator.supervised.training.train_supervised_local``,
the same loop Ray Train workers run); ``--ray-workers N`` sends every run
through Ray Train with N workers instead.

Run: ``python -m benchmarks.multi_digit [--epochs 8] [--quick]``;
writes ``benchmarks/results/multi_digit.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from orchestrator.supervised.training import train_supervised, train_supervised_local
from policies import ARCHITECTURES, COMBINERS
from tasks.supervised import write_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "multi_digit.json"
TASKS = ("left_digit", "right_digit")
# Pareto MTL follows one preference; the middle of 5 (45 degrees) weighs both digits alike.
COMBINER_PARAMS = {"pareto_mtl": {"preference_index": 2, "num_preferences": 5}}


def summarise(history: list[dict[str, float]]) -> dict[str, float]:
    """Last-epoch and best-validation-epoch test accuracy per task."""
    last = history[-1]
    best = max(history, key=lambda m: m["val/accuracy"])
    out = {"best_val_epoch": int(best["epoch"]), "val_accuracy_best": best["val/accuracy"]}
    for task in TASKS:
        out[f"test_accuracy_last/{task}"] = last[f"test/accuracy/{task}"]
        out[f"test_accuracy_at_best_val/{task}"] = best[f"test/accuracy/{task}"]
    out["test_accuracy_last/mean"] = last["test/accuracy"]
    out["test_accuracy_at_best_val/mean"] = best["test/accuracy"]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256, help="rows per step (2 rows per image)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 64], help="conv channels per layer")
    parser.add_argument("--trunk", choices=["conv", "mlp"], default="conv")
    parser.add_argument("--num-train", type=int, default=6000, help="training images (pairs of digits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--combiners", nargs="+", default=list(COMBINERS), choices=list(COMBINERS))
    parser.add_argument("--mnist", default=None, help="folder with MNIST IDX files (default: sklearn 8x8 digits)")
    parser.add_argument("--ray-workers", type=int, default=0, help="run through Ray Train with N CPU workers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 epochs on 1000 images (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.num_train = 2, 1000
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        params = {"num_train": args.num_train, "num_val": 1000, "num_test": 1000}
        if args.mnist:
            params["mnist_path"] = args.mnist
        path = write_dataset("multi_digit", tmp, seed=args.seed, **params)
        if args.ray_workers:
            import ray

            from orchestrator.runs.local_ray import secure_local_ray

            secure_local_ray()  # token auth (Ray-generated token), one node on 127.0.0.1
            ray.init(num_cpus=max(2, args.ray_workers), include_dashboard=False, log_to_driver=False)
        print(f"{'architecture':<16} {'combiner':<11} {'shared':>8} {'task-sp.':>8}  "
              f"{'left':>6} {'right':>6} {'mean':>6}  (test acc. at best val epoch)  time")
        for arch in args.architectures:
            for combiner in args.combiners:
                common = dict(
                    dataset_path=path,
                    architecture=arch,
                    combiner=combiner,
                    hidden=tuple(args.hidden),
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    seed=args.seed,
                    combiner_params=COMBINER_PARAMS.get(combiner),
                    architecture_params={"trunk": args.trunk},
                )
                started = time.perf_counter()
                if args.ray_workers:
                    result = train_supervised(
                        **common,
                        num_workers=args.ray_workers,
                        use_gpu=False,
                        storage_path=Path(tmp) / "runs",
                        run_name=f"{arch}-{combiner}",
                    )
                else:
                    result = train_supervised_local(**common)
                seconds = time.perf_counter() - started
                row = {
                    "architecture": arch,
                    "combiner": combiner,
                    "shared_params": result.parameter_counts["shared"],
                    "task_specific_params": result.parameter_counts["task_specific"],
                    "seconds": seconds,
                    **summarise(result.metrics_history),
                }
                rows.append(row)
                print(
                    f"{arch:<16} {combiner:<11} {row['shared_params']:>8} {row['task_specific_params']:>8}  "
                    f"{row['test_accuracy_at_best_val/left_digit']:6.3f} {row['test_accuracy_at_best_val/right_digit']:6.3f} "
                    f"{row['test_accuracy_at_best_val/mean']:6.3f}  {seconds:5.0f} s",
                    flush=True,
                )
    report = {
        "benchmark": "multi_digit",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": "sklearn 8x8 digits, MultiMNIST overlay on 12x12" if not args.mnist else "MNIST IDX, MultiMNIST overlay on 36x36",
        "combiner_params": COMBINER_PARAMS,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
