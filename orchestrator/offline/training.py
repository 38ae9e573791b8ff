"""Offline `mto train`: discrete CQL over a collected dataset with data sharing, as a Ray Train worker.

`train_offline(cfg, run_path, state)` trains one task-conditioned discrete CQL network on the dataset, building
each batch with the configured data-sharing mode (`cds` recomputes its rule with the current Q
every step), evaluates the greedy policy online per task, and logs per-task success and the
task x task sharing matrix to MLflow.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from curricula.data_sharing import share_transitions
from orchestrator.config import ConfigError, ExperimentConfig, resolve_task_space
from orchestrator.offline.collection import offline_section
from orchestrator.offline.config import OfflineConfig
from tasks.simon_says.relabel import relabel
from tasks.simon_says.transitions import TransitionBatch, read_transitions

CHECKPOINT_FILE = "q_network.pt"


# --------------------------------------------------------------------------- batches with data sharing
class SharedBatches:
    """Builds each training batch: own transitions of every task, plus other tasks' transitions
    relabeled for it and admitted by the sharing mode. Keeps the task x task offered/accepted counts."""

    def __init__(self, data: TransitionBatch, task_item_index: np.ndarray, num_tasks: int, offline: OfflineConfig,
                 rng: np.random.Generator, task_names: Sequence[str] | None = None) -> None:
        order = np.argsort(data.task, kind="stable")  # each task's rows contiguous: cheap "any other task" draws
        self.data = data.take(order)
        self.task_item_index = np.asarray(task_item_index, dtype=np.int64)
        self.num_tasks = num_tasks
        self.offline = offline
        self.rng = rng
        self.task_names = list(task_names) if task_names is not None else None
        counts = np.bincount(self.data.task, minlength=num_tasks)
        self.start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.count = counts
        self.offered = np.zeros((num_tasks, num_tasks), dtype=np.int64)
        self.accepted = np.zeros((num_tasks, num_tasks), dtype=np.int64)
        if offline.sharing == "cds":
            empty = [self._name(i) for i in range(num_tasks) if counts[i] == 0]
            if empty:
                raise ValueError(f"cds needs own data for every task to set its threshold; no transitions for {empty} "
                                 "in the dataset (collect some, or use sharing 'all')")

    def _name(self, i: int) -> str:
        return self.task_names[i] if self.task_names else f"task {i}"

    def sample(self, q_values: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[TransitionBatch, np.ndarray]:
        """One batch (and, per row, the task it trains) using ``q_values(obs, action)`` for the cds rule."""
        n, off = len(self.data), self.offline
        own_rows, cands, cand_src = [], [], []
        for i in range(self.num_tasks):
            own = self.start[i] + self.rng.integers(0, self.count[i], off.batch_size_per_task) if self.count[i] else np.zeros(0, np.int64)
            own_rows.append(own)
            others = n - self.count[i]
            if off.sharing == "none" or off.shared_per_task == 0 or others == 0:
                cands.append(np.zeros(0, np.int64))
            else:
                u = self.rng.integers(0, others, off.shared_per_task)
                cands.append(np.where(u >= self.start[i], u + self.count[i], u))  # skip task i's block
            cand_src.append(self.data.task[cands[-1]])
        relabeled = [relabel(self.data.take(c), i, self.task_item_index) for i, c in enumerate(cands)]
        if off.sharing == "cds":
            own_all = np.concatenate(own_rows)
            obs = np.concatenate([self.data.obs[own_all]] + [r.obs for r in relabeled])
            action = np.concatenate([self.data.action[own_all]] + [r.action for r in relabeled])
            q = q_values(obs, action)
            sizes = [len(r) for r in own_rows] + [len(r) for r in relabeled]
            parts = np.split(q, np.cumsum(sizes)[:-1])
            own_q, cand_q = parts[: self.num_tasks], parts[self.num_tasks:]
        else:
            own_q = [np.zeros(0)] * self.num_tasks
            cand_q = [np.zeros(len(r)) for r in relabeled]
        decision = share_transitions(off.sharing, own_q, cand_q, cand_src, off.percentile, self.task_names)
        pieces, trains = [], []
        for i in range(self.num_tasks):
            src, mask = cand_src[i], decision.masks[i]
            self.offered[i] += np.bincount(src, minlength=self.num_tasks)
            self.accepted[i] += np.bincount(src[mask], minlength=self.num_tasks)
            pieces += [self.data.take(own_rows[i]), relabeled[i].take(mask)]
            trains.append(np.full(len(own_rows[i]) + int(mask.sum()), i, dtype=np.int64))
        return TransitionBatch.concatenate(pieces), np.concatenate(trains)

    def sharing_matrix(self) -> np.ndarray:
        """Accepted fraction of task j's offered transitions into task i so far (NaN: none offered; diagonal 1)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(self.offered > 0, self.accepted / np.maximum(self.offered, 1), np.nan)
        np.fill_diagonal(m, 1.0)
        return m


def plot_sharing_matrix(matrix: np.ndarray, names: Sequence[str], path: str | Path, title: str) -> Path:
    """Task x task heatmap: row = task trained, column = task the data came from."""
    from orchestrator.runs.plots import plt, save_figure  # plt with the headless backend selected

    size = max(4.0, 0.35 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=max(4, min(9, int(300 / max(len(names), 1)))))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=max(4, min(9, int(300 / max(len(names), 1)))))
    ax.set_xlabel("data from task")
    ax.set_ylabel("shared into task")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="accepted fraction")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- training
def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("offline.device: 'cuda' but torch sees no GPU; valid choices: auto, cpu, cuda")
    return choice


def load_offline_dataset(cfg: ExperimentConfig) -> tuple[TransitionBatch, Any]:
    """Read and check the dataset; its tasks must be the config's tasks, in the same order."""
    offline = offline_section(cfg)
    names = resolve_task_space(cfg).names
    try:
        data, info = read_transitions(offline.dataset)
    except FileNotFoundError as exc:
        raise ConfigError(f"offline.dataset: {exc} (run `mto collect` first)") from None
    if info.task_names != tuple(names):
        raise ConfigError(f"offline.dataset: {offline.dataset} was collected for tasks {list(info.task_names)}, "
                          f"this config trains {list(names)}")
    return data, info


def run_offline(cfg: ExperimentConfig, run_path: Path, live: bool | None = None, log: bool = True) -> dict[str, Any]:
    """Train CQL on the dataset inside the active MLflow run (``log=False``: no MLflow, e.g. benchmarks).

    Returns per-task success of the last evaluation, the sharing matrix, timings and the checkpoint path.
    """
    import mlflow
    import torch

    from orchestrator.rl.evaluate import evaluation_episodes
    from orchestrator.runs.progress import TrainingProgress
    from orchestrator.runs.tracking import log_metrics_safe
    from policies.cql import CQLBatch, CQLConfig, DiscreteCQL

    offline = offline_section(cfg)
    if offline.torch_threads:
        torch.set_num_threads(offline.torch_threads)
    names = list(resolve_task_space(cfg).names)
    t_load = time.perf_counter()
    data, info = load_offline_dataset(cfg)
    load_seconds = time.perf_counter() - t_load
    device = _device(offline.device)
    rng = np.random.default_rng(cfg.seed)
    batches = SharedBatches(data, info.task_item_index, len(names), offline, rng, names)
    agent = DiscreteCQL(info.obs_dim, _num_actions(cfg),
                        CQLConfig(gamma=offline.gamma, alpha=offline.alpha, lr=offline.lr, hidden=tuple(offline.hidden),
                                  tau=offline.tau), seed=cfg.seed, device=device)

    def evaluate(step: int) -> dict[str, float]:
        outcomes = evaluation_episodes(agent, cfg, offline.eval_episodes_per_task, greedy=True, seed=cfg.seed + step)
        per_task = outcomes.success.reshape(len(names), offline.eval_episodes_per_task).mean(axis=1)
        return dict(zip(names, per_task.tolist()))

    success: dict[str, float] = {}
    sample_seconds = update_seconds = 0.0
    rows = 0
    window: dict[str, list[float]] = {}
    last_offered, last_accepted = batches.offered.copy(), batches.accepted.copy()
    with TrainingProgress(offline.gradient_steps, 0, live, unit="step") as progress:
        for step in range(1, offline.gradient_steps + 1):
            t0 = time.perf_counter()
            batch, _ = batches.sample(lambda o, a: agent.q_values(o, a))
            t1 = time.perf_counter()
            losses = agent.update(CQLBatch.from_numpy(device, obs=batch.obs, action=batch.action, reward=batch.reward,
                                                      next_obs=batch.next_obs, terminated=batch.terminated))
            update_seconds += time.perf_counter() - t1
            sample_seconds += t1 - t0
            rows += len(batch)
            for k, v in losses.items():
                window.setdefault(k, []).append(v)
            window.setdefault("batch_size", []).append(len(batch))
            if step % offline.log_every == 0 or step == offline.gradient_steps:
                metrics = {k: float(np.mean(v)) for k, v in window.items()}
                window.clear()
                offered = (batches.offered - last_offered).sum(axis=1)
                accepted = (batches.accepted - last_accepted).sum(axis=1)
                last_offered, last_accepted = batches.offered.copy(), batches.accepted.copy()
                for i, n in enumerate(names):
                    if offered[i]:
                        metrics[f"shared_accepted/{n}"] = accepted[i] / offered[i]
                metrics["samples_per_second"] = rows / max(sample_seconds + update_seconds, 1e-9)
                metrics["loader_samples_per_second"] = rows / max(sample_seconds, 1e-9)
                if log:
                    log_metrics_safe(metrics, step=step)
                progress.update_status(step, f"loss {metrics['loss']:.3f} | cql {metrics['cql_regulariser']:.3f} | "
                                       f"batch {metrics['batch_size']:.0f} | {metrics['samples_per_second']:,.0f} samples/s")
            if step % offline.eval_every == 0 or step == offline.gradient_steps:
                success = evaluate(step)
                mean = float(np.mean(list(success.values())))
                if log:
                    log_metrics_safe({**{f"success_rate/{n}": s for n, s in success.items()}, "mean_success": mean}, step=step)

    checkpoint = agent.save(run_path / CHECKPOINT_FILE)
    matrix = batches.sharing_matrix()
    (run_path / "sharing_matrix.json").write_text(json.dumps(
        {"tasks": names, "accepted_fraction": [[None if np.isnan(x) else float(x) for x in row] for row in matrix],
         "offered": batches.offered.tolist(), "accepted": batches.accepted.tolist()}, indent=1))
    result = {"success_rate": success, "mean_success": float(np.mean(list(success.values()))) if success else 0.0,
              "sharing_matrix": matrix, "checkpoint": str(checkpoint), "load_seconds": load_seconds,
              "dataset_rows": len(data), "load_rows_per_second": len(data) / max(load_seconds, 1e-9),
              "sample_seconds": sample_seconds, "update_seconds": update_seconds, "rows_trained": rows}
    if log:
        from mlflow.tracking import MlflowClient

        from orchestrator.runs.plots import plot_success_curves
        from orchestrator.runs.tracking import metric_histories

        log_metrics_safe({"dataset_load_rows_per_second": result["load_rows_per_second"]}, step=offline.gradient_steps)
        mlflow.log_artifact(str(checkpoint), "checkpoint")
        mlflow.log_artifact(str(run_path / "sharing_matrix.json"), "sharing")
        with tempfile.TemporaryDirectory() as tmp:
            title = f"Data sharing ({offline.sharing}): accepted fraction"
            mlflow.log_artifact(str(plot_sharing_matrix(matrix, names, Path(tmp) / "sharing_matrix.png", title)), "plots")
            run_id = mlflow.active_run().info.run_id
            histories = metric_histories(MlflowClient(mlflow.get_tracking_uri()), run_id, "success_rate")
            if histories:
                mlflow.log_artifact(str(plot_success_curves(histories, Path(tmp) / "success_rate.png", names,
                                                            cfg.training.mastery_threshold)), "plots")
    return result


RESULT_FILE = "offline_result.json"


def _num_actions(cfg: ExperimentConfig) -> int:
    from tasks.simon_says import SimonSaysVectorEnv

    env = SimonSaysVectorEnv(num_envs=1, tasks=list(resolve_task_space(cfg).names), horizon=cfg.task.horizon)
    return int(env.single_action_space.n)


def _offline_train_worker(config: dict[str, Any]) -> None:
    """Ray Train worker body: CQL over the dataset, logging into the driver's MLflow run."""
    import mlflow
    from ray import train

    cfg = ExperimentConfig.model_validate(config["cfg"])
    run_path = Path(config["run_path"])
    mlflow.set_tracking_uri(config["tracking_uri"])
    with mlflow.start_run(run_id=config["run_id"]):
        result = run_offline(cfg, run_path, live=False)
    summary = {k: result[k] for k in ("success_rate", "mean_success", "checkpoint")}
    # The driver reads the outcome from the run folder (Ray Train metrics are scalars only).
    (run_path / RESULT_FILE).write_text(json.dumps(summary))
    train.report({"mean_success": result["mean_success"]})


def _fit_on_ray_train(cfg: ExperimentConfig, run_path: Path, tracking_uri: str, run_id: str) -> dict[str, Any]:
    """Run `run_offline` as a one-worker Ray Train `TorchTrainer` (on a GPU when the config or cluster has one),
    on the Ray that `training_run` connected. Every path handed to the worker is absolute (it runs elsewhere)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    offline = offline_section(cfg)
    run_path = run_path.resolve()
    use_gpu = offline.device == "cuda" or (offline.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
    trainer = TorchTrainer(
        _offline_train_worker,
        train_loop_config={"cfg": cfg.to_dict(), "run_path": str(run_path), "tracking_uri": tracking_uri,
                           "run_id": run_id},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=use_gpu),
        run_config=RunConfig(name="offline", storage_path=str(run_path / "ray_train")),
    )
    trainer.fit()
    return json.loads((run_path / RESULT_FILE).read_text())


def train_offline(cfg: ExperimentConfig, run_path: Path, state, live: bool | None = None):
    """`mto train` for a config with an `offline` section, inside `training_run` (which opened the run
    folder and the MLflow run): CQL training on Ray Train, online evaluation; returns the same
    `TrainingSummary` as RL runs (``iterations`` = gradient steps)."""
    import mlflow

    from orchestrator.runs.progress import console, task_table
    from orchestrator.runs.run_folder import TrainingSummary

    offline = offline_section(cfg)
    tracking_uri = mlflow.get_tracking_uri()
    result = _fit_on_ray_train(cfg, run_path, tracking_uri, state.mlflow_run_id)
    threshold = cfg.training.mastery_threshold
    success = result["success_rate"]
    rows = [(n, s, "yes" if s >= threshold else "") for n, s in success.items()]
    console.print(task_table(f"Per-task success (offline CQL, sharing={offline.sharing}, "
                             f"{offline.eval_episodes_per_task} greedy episodes each)", rows, ["task", "success_rate", "mastered"]))
    console.print(f"mean success {result['mean_success']:.3f}")
    return TrainingSummary(run_id=state.mlflow_run_id, run_path=run_path, tracking_uri=tracking_uri,
                           iterations=offline.gradient_steps, env_steps=0, success_rate=success,
                           mastered=[n for n, s in success.items() if s >= threshold], checkpoint=result["checkpoint"])


__all__ = ["SharedBatches", "load_offline_dataset", "plot_sharing_matrix", "run_offline", "train_offline"]
