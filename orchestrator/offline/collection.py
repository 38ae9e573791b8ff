"""`mto collect`: run a config's behaviour policies as Ray tasks and write a Parquet transition dataset.

`collect(cfg)` runs every behaviour source of ``cfg.offline`` as Ray tasks; each task steps
one vectorised Simon Says env and streams its own part files (row groups, partitioned by
task), so no process holds the dataset.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from orchestrator.config import ConfigError, ExperimentConfig, resolve_task_space
from orchestrator.offline.config import BehaviourSource, OfflineConfig
from tasks.simon_says.transitions import DatasetCard, TransitionBatch, TransitionWriter

# --------------------------------------------------------------------------- collection
def _behaviour_policy(source: dict[str, Any], env, task_names: Sequence[str]) -> Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]:
    """``act(obs, task, live, rng)`` -> actions for every sub-env (``live``: envs whose action counts)."""
    num_actions = env.single_action_space.n
    skill = float(source["skill"])
    if source["policy"] == "random":
        return lambda obs, task, live, rng: rng.integers(0, num_actions, obs.shape[0])
    if source["policy"] == "scripted":
        from tasks.simon_says.scripted import TechTreePlanner

        planner = TechTreePlanner(env.core)

        def scripted(obs, task, live, rng):
            actions = rng.integers(0, num_actions, obs.shape[0])
            for i in np.flatnonzero(live & (rng.random(obs.shape[0]) < skill)):
                actions[i] = planner.act(int(i), task_names[task[i]])
            return actions

        return scripted
    from policies.cql import DiscreteCQL

    agent = DiscreteCQL.load(source["checkpoint"])
    if agent.obs_dim != env.single_observation_space.shape[0] or agent.num_actions != num_actions:
        raise ValueError(f"checkpoint {source['checkpoint']} takes {agent.obs_dim} observation columns and "
                         f"{agent.num_actions} actions; this env has {env.single_observation_space.shape[0]} and {num_actions}")

    def greedy(obs, task, live, rng):
        actions = agent.q_values(obs).argmax(axis=1)
        explore = rng.random(obs.shape[0]) >= skill
        actions[explore] = rng.integers(0, num_actions, int(explore.sum()))
        return actions

    return greedy


def collect_part(root: str, writer_name: str, worker_uid: int, task_names: Sequence[str], source: dict[str, Any],
                 horizon: int, num_envs: int, transitions: int, row_group_size: int, seed: int) -> dict[str, Any]:
    """One collector: run ``source`` on ``num_envs`` games until ``transitions`` rows are written.

    Plain function (a Ray task wraps it). Steps that only reset an env (gymnasium NEXT_STEP
    autoreset: the action is ignored) are not transitions and are not written.
    """
    from tasks.simon_says import SimonSaysVectorEnv

    t0 = time.perf_counter()
    env = SimonSaysVectorEnv(num_envs=num_envs, tasks=list(task_names), horizon=horizon)
    allowed = np.array([task_names.index(t) for t in (source["tasks"] or task_names)], dtype=np.int64)
    env.set_task_sampler(lambda n, rng: allowed[rng.integers(0, allowed.size, n)])
    act = _behaviour_policy(source, env, task_names)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    task = info["task"].copy()
    episode = (np.int64(worker_uid) << 32) + np.arange(num_envs, dtype=np.int64)
    next_episode = num_envs
    step = np.zeros(num_envs, dtype=np.int64)
    resetting = np.zeros(num_envs, dtype=bool)
    behaviour = np.full(num_envs, BehaviourSource(**source).name, dtype=object)
    writer = TransitionWriter(root, writer_name, task_names, env.item_names, env.task_item_index,
                              env.single_observation_space.shape[0], row_group_size)
    episodes_done = queued = 0
    with writer:
        while queued < transitions:
            live = ~resetting
            actions = act(obs, task, live, rng)
            next_obs, reward, terminated, truncated, info = env.step(actions)
            keep = np.flatnonzero(live)[: transitions - queued]
            queued += keep.size
            writer.write(TransitionBatch(
                task=task[keep], obs=obs[keep], action=actions[keep], reward=reward[keep], next_obs=next_obs[keep],
                terminated=terminated[keep], truncated=truncated[keep], items_obtained=info["items_obtained"][keep],
                episode_id=episode[keep], step=step[keep], behaviour_policy=behaviour[keep]))
            step[live] += 1
            if resetting.any():  # these envs started a new episode at this step
                idx = np.flatnonzero(resetting)
                episode[idx] = (np.int64(worker_uid) << 32) + next_episode + np.arange(idx.size)
                next_episode += idx.size
                step[idx] = 0
                task[idx] = info["task"][idx]
            resetting = terminated | truncated
            episodes_done += int(resetting.sum())
            obs = next_obs
    env.close()
    per_task = {}
    for path in writer.files:
        import pyarrow.parquet as pq

        per_task[path.parent.name[len("task="):]] = pq.read_metadata(path).num_rows
    return {"rows": writer.rows_written, "episodes": episodes_done, "seconds": time.perf_counter() - t0,
            "per_task": per_task, "files": [str(p) for p in writer.files], "num_actions": int(env.single_action_space.n),
            "obs_dim": int(env.single_observation_space.shape[0]), "item_names": list(env.item_names),
            "task_item_index": env.task_item_index.tolist()}


@dataclass
class CollectionSummary:
    """What `collect` returns."""

    dataset: Path
    transitions: int
    episodes: int
    seconds: float
    transitions_per_second: float
    per_task: dict[str, int] = field(default_factory=dict)


def offline_section(cfg: ExperimentConfig) -> OfflineConfig:
    if cfg.offline is None:
        raise ConfigError(f"{cfg.name}: this config has no `offline` section (needed by `mto collect` and offline training)")
    if cfg.task.backend != "techtree":
        raise ConfigError(f"{cfg.name}: task.backend: offline RL needs 'techtree' (relabeling reads its item vocabulary), "
                          f"got {cfg.task.backend!r}")
    return cfg.offline


def check_collection(cfg: ExperimentConfig) -> tuple[str, ...]:
    """Refuse behaviour sources whose tasks are not in ``task.tasks``; returns the task names."""
    offline = offline_section(cfg)
    names = resolve_task_space(cfg).names
    for i, source in enumerate(offline.behaviour):
        unknown = sorted(set(source.tasks or ()) - set(names))
        if unknown:
            raise ConfigError(f"offline.behaviour.{i}.tasks: {unknown} are not tasks of this config; valid: {list(names)}")
        if source.checkpoint is not None and not Path(source.checkpoint).is_file():
            raise ConfigError(f"offline.behaviour.{i}.checkpoint: no file {source.checkpoint}")
    return names


def collect(cfg: ExperimentConfig, address: str | None = None, overwrite: bool = False) -> CollectionSummary:
    """Run the behaviour sources as Ray tasks, each writing its own part files; then write the dataset card."""
    import ray

    from orchestrator.runs.progress import console
    from orchestrator.runs.session import connect_ray

    offline = offline_section(cfg)
    names = check_collection(cfg)
    root = Path(offline.dataset)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise ConfigError(f"offline.dataset: {root} already holds data; remove it or pass --overwrite")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)

    started = connect_ray(address)
    try:
        remote = ray.remote(num_cpus=1)(collect_part)
        t0 = time.perf_counter()
        futures = []
        for s, source in enumerate(offline.behaviour):
            share = np.diff(np.linspace(0, source.transitions, offline.collectors_per_source + 1).round().astype(int))
            for c, count in enumerate(share):
                if count == 0:
                    continue
                uid = s * 1024 + c
                futures.append(remote.remote(
                    str(root), f"s{s}-c{c}", uid, names, source.model_dump(), cfg.task.horizon,
                    offline.envs_per_collector, int(count), offline.row_group_size, cfg.seed * 1_000_003 + uid))
        parts = ray.get(futures)
        seconds = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()

    per_task: dict[str, int] = {}
    for part in parts:
        for task, rows in part["per_task"].items():
            per_task[task] = per_task.get(task, 0) + rows
    total = sum(p["rows"] for p in parts)
    card = DatasetCard(
        task_names=list(names), item_names=parts[0]["item_names"], task_item_index=parts[0]["task_item_index"],
        obs_dim=parts[0]["obs_dim"], num_actions=parts[0]["num_actions"], horizon=cfg.task.horizon,
        backend=cfg.task.backend, seed=cfg.seed,
        behaviour=[{"id": s.name, **s.model_dump()} for s in offline.behaviour],
        transitions=total, episodes=sum(p["episodes"] for p in parts), transitions_per_task=per_task,
        collection_seconds=seconds, transitions_per_second=total / max(seconds, 1e-9))
    card.write(root)
    console.print(f"collected {total:,} transitions ({card.episodes:,} finished episodes) into {root} "
                  f"in {seconds:.1f} s: {card.transitions_per_second:,.0f} transitions/s")
    return CollectionSummary(root, total, card.episodes, seconds, card.transitions_per_second, per_task)


__all__ = ["CollectionSummary", "check_collection", "collect", "collect_part", "offline_section"]
