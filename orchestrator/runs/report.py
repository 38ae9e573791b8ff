"""`mto report`: read a run back from MLflow — per-task table and plots."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from orchestrator.config import ConfigError, one_path_component
from orchestrator.runs.plots import plot_distribution_heatmap, plot_success_curves
from orchestrator.runs.progress import console, task_table
from orchestrator.runs.tracking import find_run, metric_histories, resolve_tracking_uri


def run_report(run: str, out: str | None = None, run_dir: str = "runs") -> dict[str, dict[str, float]]:
    """Print the per-task table of a run's latest metrics and write its plots to `out`."""
    uri = resolve_tracking_uri(None, run_dir)
    mlflow.set_tracking_uri(uri)
    try:
        found = find_run(run, uri)
    except LookupError as exc:
        raise ConfigError(str(exc)) from None
    metrics = found.data.metrics
    if found.data.tags.get("mto.kind") == "supervised":
        return _supervised_report(found, uri, out)
    tasks = sorted({k.split("/", 1)[1] for k in metrics if k.startswith("success_rate/")})
    threshold = float(found.data.params.get("training.mastery_threshold", 0.9))
    table = {
        t: {
            "success_rate": metrics.get(f"success_rate/{t}", 0.0),
            "probability": metrics.get(f"probability/{t}", 0.0),
            "learning_progress": metrics.get(f"learning_progress/{t}", 0.0),
            "episodes": metrics.get(f"episodes/{t}", 0.0),
        }
        for t in tasks
    }
    order = sorted(tasks, key=lambda t: -table[t]["success_rate"])
    rows = [(t, table[t]["success_rate"], table[t]["probability"], table[t]["learning_progress"], int(table[t]["episodes"])) for t in order]
    console.print(task_table(f"Run {found.info.run_name} ({found.info.status})", rows, ["task", "success_rate", "probability", "learning_progress", "episodes"]))
    client = MlflowClient(uri)
    iterations = len(client.get_metric_history(found.info.run_id, "env_steps_total"))
    console.print(
        f"iterations {iterations} | env steps {int(metrics.get('env_steps_total', 0)):,}"
        f" | mastered {int(metrics.get('items_mastered', 0))}/{len(tasks)} (success >= {threshold})"
    )
    out_dir = Path(out or default_report_dir(found))
    out_dir.mkdir(parents=True, exist_ok=True)
    draw_curriculum_plots(client, found.info.run_id, out_dir, None, threshold)
    console.print(f"plots written to {out_dir}/")
    return table


def default_report_dir(found) -> Path:
    """`report-<run name>`, or `report-<run id>` when the name (anyone's, on a shared tracking server)
    is not one path component and would put the plots somewhere else."""
    try:
        return Path(f"report-{one_path_component(found.info.run_name or '')}")
    except ValueError:
        return Path(f"report-{found.info.run_id}")


def draw_curriculum_plots(client: MlflowClient, run_id: str, out_dir: Path, order, mastery_threshold: float) -> list[Path]:
    """Per-task success curves and the curriculum's distribution heatmap, from the run's MLflow history."""
    paths = []
    success = metric_histories(client, run_id, "success_rate")
    probability = metric_histories(client, run_id, "probability")
    if success:
        paths.append(plot_success_curves(success, out_dir / "success_rate.png", order, mastery_threshold))
    if probability:
        paths.append(plot_distribution_heatmap(probability, out_dir / "curriculum_distribution.png", order))
    return paths


def _supervised_report(found, uri: str, out: str | None) -> dict[str, dict[str, float]]:
    """Per-task test/validation loss and accuracy, and the validation-loss curves."""
    from orchestrator.runs.plots import plot_task_curves

    metrics = found.data.metrics
    tasks = sorted({k.split("/", 2)[2] for k in metrics if k.startswith("test/loss/")})
    table = {
        t: {key: metrics[f"{split}/{kind}/{t}"] for split in ("val", "test") for kind in ("loss", "accuracy")
            if f"{split}/{kind}/{t}" in metrics for key in [f"{split}_{kind}"]}
        for t in tasks
    }
    columns = sorted({c for row in table.values() for c in row})
    rows = [(t, *[table[t].get(c, float("nan")) for c in columns]) for t in tasks]
    console.print(task_table(f"Run {found.info.run_name} ({found.info.status})", rows, ["task", *columns]))
    out_dir = Path(out or default_report_dir(found))
    out_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    histories = metric_histories(client, found.info.run_id, "val/loss")
    if histories:
        plot_task_curves(histories, out_dir / "val_loss.png",
                         ylabel="validation loss", title="Per-task validation loss", xlabel="epoch")
    console.print(f"plots written to {out_dir}/")
    return table
