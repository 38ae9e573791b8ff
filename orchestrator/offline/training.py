"""Offline `mto train`: discrete CQL over a collected dataset with data sharing, as a Ray Train worker.

`train_offline(cfg, run_path, state)` trains one task-conditioned discrete CQL network on the dataset, building
each batch with the configured data-sharing mode (`cds` recomputes its rule with the current Q
every step), evaluates the greedy policy online per task, logs per-task success and the
task x task sharing matrix to MLflow, and checkpoints so `mto train --resume` continues the run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from curricula.data_sharing import CDS_MODES, RunningThreshold, share_transitions
from orchestrator.config import ConfigError, ExperimentConfig, resolve_task_space
from orchestrator.offline.collection import offline_section
from orchestrator.offline.config import OfflineConfig
from orchestrator.runs.run_folder import STATE_FILE, TrainerState
from tasks.simon_says.relabel import obtained_before, relabel
from tasks.simon_says.transitions import TransitionBatch, read_transitions

CHECKPOINT_FILE = "q_network.pt"


# --------------------------------------------------------------------------- batches with data sharing
class SharedBatches:
    """Builds each training batch: own transitions of every task, plus other tasks' transitions
    relabeled for it and admitted by the sharing mode. Keeps the task x task offered/accepted counts,
    split by whether the relabeled transition carries the target's reward.

    Candidates for task i are drawn from other tasks' rows *before* task i's item was obtained in
    that episode: a later row is no transition of task i (its episode would have ended), see
    `tasks.simon_says.relabel.obtained_before`. cds / cds_basic: each step one forward pass values
    every task's own rows and candidates under the current Q (the one trained on the effective
    dataset); the own-data values feed a `RunningThreshold` per task (a window of
    ``offline.threshold_window`` recent own transitions), and a candidate joins iff its
    Q(s, a, i) >= that threshold. For the first ``offline.cds_warmup_steps`` batches every
    candidate joins. Why: the rule can only judge a candidate the Q-function has been trained
    on; one rejected by the untrained network's noise stays outside the effective dataset, and
    CQL then pushes its action's Q further down at those states, so that first verdict would
    be permanent (tests/test_offline_cds_rule.py: a better candidate rejected for good, seed 1).
    """

    def __init__(self, data: TransitionBatch, task_item_index: np.ndarray, num_tasks: int, offline: OfflineConfig,
                 rng: np.random.Generator, task_names: Sequence[str] | None = None) -> None:
        order = np.argsort(data.task, kind="stable")  # each task's rows contiguous
        self.data = data.take(order)
        self.task_item_index = np.asarray(task_item_index, dtype=np.int64)
        self.num_tasks = num_tasks
        self.offline = offline
        self.rng = rng
        self.task_names = list(task_names) if task_names is not None else [f"task {i}" for i in range(num_tasks)]
        counts = np.bincount(self.data.task, minlength=num_tasks)
        self.start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.count = counts
        # Per target task: the other tasks' rows that are transitions of it (target item not yet obtained).
        before = obtained_before(self.data, self.task_item_index)
        self.pool = [np.flatnonzero((self.data.task != i) & ~before[:, i]) for i in range(num_tasks)]
        self.offered = np.zeros((num_tasks, num_tasks), dtype=np.int64)
        self.accepted = np.zeros((num_tasks, num_tasks), dtype=np.int64)
        # [task, 0 = no reward / 1 = carries the target's reward]
        self.offered_by_reward = np.zeros((num_tasks, 2), dtype=np.int64)
        self.accepted_by_reward = np.zeros((num_tasks, 2), dtype=np.int64)
        self.q_sum = np.zeros((num_tasks, 2))  # Q(s, a, i) of offered candidates, summed (cds diagnostics)
        self.threshold_sum = np.zeros(num_tasks)
        self.threshold_steps = 0
        self.steps = 0  # batches drawn so far
        self.running: RunningThreshold | None = None
        if offline.sharing in CDS_MODES:
            empty = [self.task_names[i] for i in range(num_tasks) if counts[i] == 0]
            if empty:
                raise ValueError(f"{offline.sharing} needs own data for every task to set its threshold; no transitions "
                                 f"for {empty} in the dataset (collect some, or use sharing 'all')")
            self.running = RunningThreshold(num_tasks, offline.threshold_window,
                                            "percentile" if offline.sharing == "cds" else "mean",
                                            offline.percentile, self.task_names)

    def sample(self, q_values: Callable[[np.ndarray], np.ndarray]) -> tuple[TransitionBatch, np.ndarray]:
        """One batch (and, per row, the task it trains) using ``q_values(obs) -> Q(s, .)`` for the cds rules."""
        off = self.offline
        own_rows, cands, cand_src = [], [], []
        for i in range(self.num_tasks):
            own = self.start[i] + self.rng.integers(0, self.count[i], off.batch_size_per_task) if self.count[i] else np.zeros(0, np.int64)
            own_rows.append(own)
            pool = self.pool[i]
            if off.sharing == "none" or off.shared_per_task == 0 or pool.size == 0:
                cands.append(np.zeros(0, np.int64))
            else:
                cands.append(pool[self.rng.integers(0, pool.size, off.shared_per_task)])
            cand_src.append(self.data.task[cands[-1]])
        relabeled = [relabel(self.data.take(c), i, self.task_item_index) for i, c in enumerate(cands)]
        thresholds = None
        cand_q = [np.zeros(len(r)) for r in relabeled]
        warming_up = self.running is not None and self.steps < off.cds_warmup_steps
        self.steps += 1
        if self.running is not None:
            own_all = np.concatenate(own_rows)
            q_all = q_values(np.concatenate([self.data.obs[own_all]] + [r.obs for r in relabeled]))
            action = np.concatenate([self.data.action[own_all]] + [r.action for r in relabeled])
            q_taken = q_all[np.arange(len(action)), action]
            # cds: the own data's Q(s, a_data); cds_basic: the greedy policy's value max_a Q(s, a) on own states.
            own_values = q_taken if off.sharing == "cds" else q_all.max(axis=1)
            sizes = [len(r) for r in own_rows] + [len(r) for r in relabeled]
            cuts = np.cumsum(sizes)[:-1]
            self.running.update(np.split(own_values, cuts)[: self.num_tasks])
            cand_q = np.split(q_taken, cuts)[self.num_tasks:]
            thresholds = self.running.thresholds()
            if not warming_up:
                self.threshold_sum += thresholds
                self.threshold_steps += 1
        decision = share_transitions("all" if warming_up else off.sharing, [np.zeros(0)] * self.num_tasks, cand_q,
                                     cand_src, off.percentile, self.task_names, thresholds=thresholds)
        pieces, trains = [], []
        for i in range(self.num_tasks):
            src, mask = cand_src[i], decision.masks[i]
            rewarded = (relabeled[i].reward > 0).astype(np.int64)
            self.offered[i] += np.bincount(src, minlength=self.num_tasks)
            self.accepted[i] += np.bincount(src[mask], minlength=self.num_tasks)
            if not warming_up:  # the rule's own verdicts (the warm-up shares everything)
                self.offered_by_reward[i] += np.bincount(rewarded, minlength=2)
                self.accepted_by_reward[i] += np.bincount(rewarded[mask], minlength=2)
                self.q_sum[i] += np.bincount(rewarded, weights=cand_q[i], minlength=2)
            pieces += [self.data.take(own_rows[i]), relabeled[i].take(mask)]
            trains.append(np.full(len(own_rows[i]) + int(mask.sum()), i, dtype=np.int64))
        return TransitionBatch.concatenate(pieces), np.concatenate(trains)

    def sharing_matrix(self) -> np.ndarray:
        """Accepted fraction of task j's offered transitions into task i so far (NaN: none offered; diagonal 1)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(self.offered > 0, self.accepted / np.maximum(self.offered, 1), np.nan)
        np.fill_diagonal(m, 1.0)
        return m

    def sharing_summary(self) -> dict[str, Any]:
        """Per task: accepted fraction of relabeled candidates that carry the target's reward vs that do not,
        and (cds) their mean Q(s, a, i) and the mean threshold they were compared with (None where none
        offered); counted after the cds warm-up, so they are the rule's own verdicts."""
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(self.offered_by_reward > 0, self.accepted_by_reward / np.maximum(self.offered_by_reward, 1), np.nan)
            q = np.where(self.offered_by_reward > 0, self.q_sum / np.maximum(self.offered_by_reward, 1), np.nan)
        cds = self.running is not None
        threshold = self.threshold_sum / max(self.threshold_steps, 1) if cds else np.full(self.num_tasks, np.nan)
        out: dict[str, Any] = {}
        for i, n in enumerate(self.task_names):
            out[n] = {"offered_rewarding": int(self.offered_by_reward[i, 1]), "offered_other": int(self.offered_by_reward[i, 0]),
                      "accepted_rewarding": _num(frac[i, 1]), "accepted_other": _num(frac[i, 0]),
                      "q_rewarding": _num(q[i, 1]) if cds else None, "q_other": _num(q[i, 0]) if cds else None,
                      "threshold": _num(threshold[i]) if cds else None}
        return out

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to draw the same batches and keep the same thresholds and counts."""
        return {"rng": self.rng.bit_generator.state, "offered": self.offered, "accepted": self.accepted,
                "offered_by_reward": self.offered_by_reward, "accepted_by_reward": self.accepted_by_reward,
                "q_sum": self.q_sum, "threshold_sum": self.threshold_sum, "threshold_steps": self.threshold_steps,
                "steps": self.steps, "running": self.running.state_dict() if self.running is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        for key in ("offered", "accepted", "offered_by_reward", "accepted_by_reward", "q_sum", "threshold_sum"):
            setattr(self, key, np.array(state[key]))
        self.threshold_steps = int(state["threshold_steps"])
        self.steps = int(state["steps"])
        if self.running is not None and state["running"] is not None:
            self.running.load_state_dict(state["running"])


def _num(x: float) -> float | None:
    """A JSON-safe float (None for NaN)."""
    return None if np.isnan(x) else float(x)


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


def run_offline(cfg: ExperimentConfig, run_path: Path, live: bool | None = None, log: bool = True,
                state: TrainerState | None = None) -> dict[str, Any]:
    """Train CQL on the dataset inside the active MLflow run (``log=False``: no MLflow, e.g. benchmarks).

    With ``state`` (a `mto train` run) it checkpoints every ``offline.checkpoint_every`` steps and
    at the end into ``checkpoints/iter_N`` (Q-network + target + Adam state, the batch builder's
    random state, counts and running thresholds, the trainer state), and when ``state.checkpoint``
    is set it continues from there: same step counter, same MLflow run, steps MLflow already has
    are not logged twice. Returns per-task success of the last evaluation, the sharing matrix,
    timings and the final Q-network file.
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
                                  tau=offline.tau, value_range=tuple(offline.value_range) if offline.value_range else None),
                        seed=cfg.seed, device=device)

    def evaluate(step: int) -> dict[str, float]:
        outcomes = evaluation_episodes(agent, cfg, offline.eval_episodes_per_task, greedy=True, seed=cfg.seed + step)
        per_task = outcomes.success.reshape(len(names), offline.eval_episodes_per_task).mean(axis=1)
        return dict(zip(names, per_task.tolist()))

    success: dict[str, float] = {}
    first_step, logged_until = 1, 0
    if state is not None and state.checkpoint:
        agent, success = _restore_checkpoint(Path(state.checkpoint), batches, device)
        first_step = state.iteration + 1
        logged_until = _last_logged_step(state.mlflow_run_id) if log else 0
    sample_seconds = update_seconds = 0.0
    rows = 0
    window: dict[str, list[float]] = {}
    last_offered, last_accepted = batches.offered.copy(), batches.accepted.copy()
    with TrainingProgress(offline.gradient_steps, first_step - 1, live, unit="step") as progress:
        for step in range(first_step, offline.gradient_steps + 1):
            t0 = time.perf_counter()
            batch, _ = batches.sample(agent.q_values)
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
                if batches.running is not None:  # the Q-value each task's candidates had to reach
                    metrics.update({f"cds_threshold/{n}": float(t) for n, t in zip(names, batches.running.thresholds())})
                metrics["samples_per_second"] = rows / max(sample_seconds + update_seconds, 1e-9)
                metrics["loader_samples_per_second"] = rows / max(sample_seconds, 1e-9)
                if log and step > logged_until:
                    log_metrics_safe(metrics, step=step)
                progress.update_status(step, f"loss {metrics['loss']:.3f} | cql {metrics['cql_regulariser']:.3f} | "
                                       f"batch {metrics['batch_size']:.0f} | {metrics['samples_per_second']:,.0f} samples/s")
            if step % offline.eval_every == 0 or step == offline.gradient_steps:
                success = evaluate(step)
                mean = float(np.mean(list(success.values())))
                if log and step > logged_until:
                    log_metrics_safe({**{f"success_rate/{n}": s for n, s in success.items()}, "mean_success": mean}, step=step)
            if state is not None and (step % offline.checkpoint_every == 0 or step == offline.gradient_steps):
                state.iteration = step
                _save_checkpoint(agent, batches, success, run_path, state)

    checkpoint = agent.save(run_path / CHECKPOINT_FILE)
    matrix = batches.sharing_matrix()
    summary = batches.sharing_summary()
    (run_path / "sharing_matrix.json").write_text(json.dumps(
        {"tasks": names, "accepted_fraction": [[None if np.isnan(x) else float(x) for x in row] for row in matrix],
         "offered": batches.offered.tolist(), "accepted": batches.accepted.tolist(), "by_reward": summary}, indent=1))
    result = {"success_rate": success, "mean_success": float(np.mean(list(success.values()))) if success else 0.0,
              "sharing_matrix": matrix, "sharing_summary": summary, "checkpoint": str(checkpoint), "load_seconds": load_seconds,
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
SHARING_STATE_FILE = "sharing_state.pkl"
KEEP_CHECKPOINTS = 2


def _save_checkpoint(agent, batches: SharedBatches, success: dict[str, float], run_path: Path, state: TrainerState) -> None:
    """``checkpoints/iter_N``: the agent, the batch builder's state and the trainer state, assembled in a staging
    folder with a manifest and renamed into place (the RL runs' checkpoint format), then the run's trainer state."""
    import pickle
    import shutil

    from orchestrator.runs.checkpoints import checkpoint_dirs, checkpoint_name, staging_dir, write_manifest

    final = run_path / "checkpoints" / checkpoint_name(state.iteration)
    staging = staging_dir(final)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    agent.save(staging / CHECKPOINT_FILE)
    with open(staging / SHARING_STATE_FILE, "wb") as f:
        pickle.dump({"batches": batches.state_dict(), "success": success}, f)
    saved = replace(state, checkpoint=str(final))
    saved.save(staging / STATE_FILE)
    write_manifest(staging)
    if final.exists():  # the same step checkpointed by an earlier attempt that died before moving on
        shutil.rmtree(final)
    os.rename(staging, final)
    saved.save(run_path / STATE_FILE)
    state.checkpoint = str(final)
    for path in checkpoint_dirs(run_path)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(path, ignore_errors=True)


def _restore_checkpoint(folder: Path, batches: SharedBatches, device: str):
    """The agent (with its optimizer) and the last evaluation from ``folder``; ``batches`` gets its state back."""
    import pickle

    from policies.cql import DiscreteCQL

    agent = DiscreteCQL.load(folder / CHECKPOINT_FILE, device=device)
    with open(folder / SHARING_STATE_FILE, "rb") as f:
        saved = pickle.load(f)
    batches.load_state_dict(saved["batches"])
    return agent, saved["success"]


def _last_logged_step(run_id: str | None) -> int:
    """The highest step this MLflow run already has the loss logged at (0 for a new run)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    if not run_id:
        return 0
    history = MlflowClient(mlflow.get_tracking_uri()).get_metric_history(run_id, "loss")
    return max((m.step for m in history), default=0)


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
    state = TrainerState(**config["state"])  # the driver's: a checkpoint to continue from, or none
    from orchestrator.runs.redaction import keep_mlflow_quiet_about

    keep_mlflow_quiet_about(config["tracking_uri"])  # this worker ends the run: MLflow would print the URI
    mlflow.set_tracking_uri(config["tracking_uri"])
    with mlflow.start_run(run_id=config["run_id"]):
        result = run_offline(cfg, run_path, live=False, state=state)
    summary = {k: result[k] for k in ("success_rate", "mean_success", "checkpoint")}
    # The driver reads the outcome from the run folder (Ray Train metrics are scalars only).
    (run_path / RESULT_FILE).write_text(json.dumps(summary))
    train.report({"mean_success": result["mean_success"]})


def _fit_on_ray_train(cfg: ExperimentConfig, run_path: Path, tracking_uri: str, state: TrainerState) -> dict[str, Any]:
    """Run `run_offline` as a one-worker Ray Train `TorchTrainer` (on a GPU when the config or cluster has one),
    on the Ray that `training_run` connected. Every path handed to the worker is absolute (it runs elsewhere).
    The worker continues from ``state.checkpoint`` when set and writes the run's checkpoints and trainer state."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    offline = offline_section(cfg)
    run_path = run_path.resolve()
    use_gpu = offline.device == "cuda" or (offline.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
    trainer = TorchTrainer(
        _offline_train_worker,
        train_loop_config={"cfg": cfg.to_dict(), "run_path": str(run_path), "tracking_uri": tracking_uri,
                           "run_id": state.mlflow_run_id, "state": asdict(state)},
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
    result = _fit_on_ray_train(cfg, run_path, tracking_uri, state)
    saved = TrainerState.load(run_path / STATE_FILE)  # the worker moved the step counter and checkpoint on
    state.iteration, state.checkpoint = saved.iteration, saved.checkpoint
    threshold = cfg.training.mastery_threshold
    success = result["success_rate"]
    rows = [(n, s, "yes" if s >= threshold else "") for n, s in success.items()]
    console.print(task_table(f"Per-task success (offline CQL, sharing={offline.sharing}, "
                             f"{offline.eval_episodes_per_task} greedy episodes each)", rows, ["task", "success_rate", "mastered"]))
    console.print(f"mean success {result['mean_success']:.3f}")
    return TrainingSummary(run_id=state.mlflow_run_id, run_path=run_path, tracking_uri=tracking_uri,
                           iterations=state.iteration, env_steps=0, success_rate=success,
                           mastered=[n for n, s in success.items() if s >= threshold], checkpoint=result["checkpoint"])


__all__ = ["SharedBatches", "load_offline_dataset", "plot_sharing_matrix", "run_offline", "train_offline"]
