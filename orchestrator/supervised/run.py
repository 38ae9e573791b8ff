"""`mto train` for the supervised families: Ray Train underneath, MLflow and the terminal on top."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from orchestrator.config import ExperimentConfig
from orchestrator.runs.progress import TrainingProgress, console, task_table
from orchestrator.runs.tracking import log_metrics_safe, log_params_safe


def prepare_dataset(cfg: ExperimentConfig, run_path: Path) -> Path:
    """The configured Parquet file, or one generated into the run folder (same seed, same data)."""
    if cfg.task.dataset is not None:
        return Path(cfg.task.dataset).resolve()
    from tasks.supervised import write_dataset

    return write_dataset(cfg.task.family, run_path / "datasets", seed=cfg.seed, **cfg.task.dataset_params)


def run_supervised(cfg: ExperimentConfig, run_path: Path, state, live: bool | None):
    """Train with `orchestrator.supervised.training.train_supervised`; log every epoch to MLflow as it ends.

    A rerun with the same run folder continues from Ray Train's latest checkpoint.
    """
    from orchestrator.supervised.training import train_supervised
    from orchestrator.runs.run_folder import STATE_FILE, TrainingSummary

    dataset = prepare_dataset(cfg, run_path)
    if state.iteration == 0:
        mlflow.log_param("dataset.path", str(dataset))
    if cfg.groups is not None:
        return _run_groups(cfg, run_path, state, live, dataset)
    per_task_loss: dict[str, list[tuple[int, float]]] = {}
    with TrainingProgress(cfg.supervised.epochs, state.iteration, live, unit="epoch") as progress:

        def on_epoch_end(metrics: dict[str, float]) -> None:
            epoch = int(metrics["epoch"]) + 1
            log_metrics_safe({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
            for key, value in metrics.items():
                if key.startswith("val/loss/"):
                    per_task_loss.setdefault(key.split("/", 2)[2], []).append((epoch, value))
            status = f"val loss {metrics.get('val/loss', float('nan')):.4f}"
            if "val/accuracy" in metrics:
                status += f" | val accuracy {metrics['val/accuracy']:.3f}"
            progress.update_status(epoch, status)
            state.iteration = epoch
            state.save(run_path / STATE_FILE)

        result = train_supervised(
            dataset_path=dataset,
            architecture=cfg.model.architecture,
            combiner=cfg.model.combiner,
            hidden=cfg.model.hidden,
            num_workers=cfg.supervised.num_workers,
            use_gpu=cfg.supervised.use_gpu,
            epochs=cfg.supervised.epochs,
            batch_size=cfg.supervised.batch_size,
            lr=cfg.supervised.lr,
            seed=cfg.seed,
            storage_path=run_path / "ray_train",
            combiner_params=cfg.model.combiner_params,
            architecture_params=cfg.model.architecture_params,
            on_epoch_end=on_epoch_end,
            run_name="train",
        )
    log_params_safe({f"parameters.{k}": v for k, v in result.parameter_counts.items()})
    state.checkpoint = result.checkpoint_path
    state.save(run_path / STATE_FILE)
    if result.checkpoint_path:
        mlflow.set_tag("mto.checkpoint", result.checkpoint_path)
    _log_loss_plot(per_task_loss)
    final = result.final_metrics
    names = list(result.task_names)
    rows = [(n, final.get(f"test/loss/{n}", float("nan")), final.get(f"test/accuracy/{n}", float("nan"))) for n in names]
    console.print(task_table("Per-task test results", rows, ["task", "test_loss", "test_accuracy"]))
    return TrainingSummary(
        run_id=state.mlflow_run_id or "",
        run_path=run_path,
        tracking_uri="",
        iterations=state.iteration,
        env_steps=0,
        success_rate={n: final.get(f"test/accuracy/{n}", float("nan")) for n in names},
        mastered=[],
        checkpoint=result.checkpoint_path,
    )


def _log_loss_plot(per_task_loss: dict[str, list[tuple[int, float]]]) -> None:
    if not per_task_loss:
        return
    from orchestrator.runs.plots import plot_task_curves

    with tempfile.TemporaryDirectory() as tmp:
        path = plot_task_curves(per_task_loss, Path(tmp) / "val_loss.png", ylabel="validation loss",
                                title="Per-task validation loss", xlabel="epoch")
        mlflow.log_artifact(str(path), "plots")


def _run_groups(cfg: ExperimentConfig, run_path: Path, state, live: bool | None, dataset: Path):
    """`groups:` set: one network per group, trained one after the other; each task is
    reported from the group whose network has its lowest validation loss."""
    from orchestrator.supervised.training import train_supervised
    from orchestrator.runs.run_folder import STATE_FILE, TrainingSummary

    finals: list[dict[str, float]] = []
    for g, group in enumerate(cfg.groups or []):
        with TrainingProgress(cfg.supervised.epochs, 0, live, unit=f"group {g} epoch") as progress:

            def on_epoch_end(metrics: dict[str, float], g: int = g, progress=progress) -> None:
                epoch = int(metrics["epoch"]) + 1
                log_metrics_safe({f"group_{g}/{k}": v for k, v in metrics.items() if k != "epoch"}, step=epoch)
                progress.update_status(epoch, f"val loss {metrics.get('val/loss', float('nan')):.4f}")

            result = train_supervised(
                dataset_path=dataset, architecture=cfg.model.architecture, combiner=cfg.model.combiner,
                hidden=cfg.model.hidden, num_workers=cfg.supervised.num_workers, use_gpu=cfg.supervised.use_gpu,
                epochs=cfg.supervised.epochs, batch_size=cfg.supervised.batch_size, lr=cfg.supervised.lr,
                seed=cfg.seed, storage_path=run_path / "ray_train", combiner_params=cfg.model.combiner_params,
                architecture_params=cfg.model.architecture_params, on_epoch_end=on_epoch_end,
                run_name=f"train_group_{g}", tasks=group,
            )
        finals.append(result.final_metrics)
        mlflow.set_tag(f"mto.checkpoint.group_{g}", result.checkpoint_path or "")
    names = sorted({n for group in cfg.groups or [] for n in group})
    final: dict[str, float] = {}
    for n in names:
        best = min((m for m in finals if f"val/loss/{n}" in m), key=lambda m: m[f"val/loss/{n}"])
        for key in (f"val/loss/{n}", f"test/loss/{n}", f"test/accuracy/{n}"):
            if key in best:
                final[key] = best[key]
    final["val/loss_total"] = sum(final[f"val/loss/{n}"] for n in names)
    log_metrics_safe(final, step=cfg.supervised.epochs)
    state.iteration = cfg.supervised.epochs
    state.save(run_path / STATE_FILE)
    rows = [(n, final.get(f"test/loss/{n}", float("nan")), final.get(f"test/accuracy/{n}", float("nan"))) for n in names]
    console.print(task_table("Per-task test results (serving group)", rows, ["task", "test_loss", "test_accuracy"]))
    return TrainingSummary(
        run_id=state.mlflow_run_id or "", run_path=run_path, tracking_uri="", iterations=state.iteration, env_steps=0,
        success_rate={n: final.get(f"test/accuracy/{n}", float("nan")) for n in names}, mastered=[], checkpoint=None,
    )
