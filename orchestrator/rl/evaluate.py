"""`mto eval`: load a checkpoint's policy and measure success on every task."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from orchestrator.config import ConfigError, ExperimentConfig, load_config, resolve_task_space
from orchestrator.runs.progress import console, task_table
from orchestrator.runs.tracking import CONFIG_ARTIFACT, resolve_tracking_uri

MODULE_SUBDIR = Path("algorithm") / "learner_group" / "learner" / "rl_module" / "default_policy"


def resolve_checkpoint(run: str, run_dir: str) -> tuple[Path, ExperimentConfig]:
    """A checkpoint folder (given directly, or the latest of an MLflow run) and its run's config.

    A folder given directly is loaded wherever it is: the user chose it. One found through MLflow
    must lie inside its run's folder under ``run_dir`` (see `locate_run`)."""
    from orchestrator.runs.run_folder import locate_run

    path = Path(run)
    if (path / MODULE_SUBDIR).is_dir():
        ckpt = path
        run_path = path.parent.parent
    else:
        run_path, state = locate_run(run, resolve_tracking_uri(None, run_dir), run_dir, f"{run}: not a checkpoint folder, and")
        ckpt = Path(state.checkpoint)
    return ckpt, load_config(run_path / CONFIG_ARTIFACT)


def check_module_fits(module, cfg: ExperimentConfig, ckpt: Path) -> None:
    """`ConfigError` when the checkpoint's policy was built for other observations or actions than the
    environments its config makes (a config that is not the checkpoint's: other tasks, action mask)."""
    if cfg.task.family == "metaworld":
        return  # SAC modules are checked by `metaworld_evaluation_episodes` itself
    from tasks.simon_says import SimonSaysVectorEnv

    env = SimonSaysVectorEnv(num_envs=1, tasks=list(resolve_task_space(cfg).names), horizon=cfg.task.horizon,
                             backend=cfg.task.backend, action_mask=cfg.task.action_mask)
    try:
        wanted = {"observation space (task.tasks, task.action_mask)": (module.observation_space, env.single_observation_space),
                  "action space (task.backend)": (module.action_space, env.single_action_space)}
    finally:
        env.close()
    for name, (trained, given) in wanted.items():
        if trained is not None and trained != given:
            raise ConfigError(f"{ckpt}: the checkpoint's policy was trained on the {name} {trained}, but its run's "
                              f"config gives {given}; evaluate it with the config it was trained with")


def evaluation_episodes(module, cfg: ExperimentConfig, episodes: int, greedy: bool, seed: int):
    """`episodes` fresh episodes of every task with `module`, all stepped as one vector env.

    Returns `EpisodeOutcomes` marked `evaluation=True` (what an evaluation-mode
    curriculum measures success from), one row per episode, grouped by task.
    """
    if cfg.task.family == "metaworld":
        from orchestrator.rl.sac import metaworld_evaluation_episodes

        return metaworld_evaluation_episodes(module, cfg, episodes, greedy, seed)
    import torch

    from curricula import EpisodeOutcomes
    from tasks.simon_says import SimonSaysVectorEnv

    task_space = resolve_task_space(cfg)
    n = len(task_space) * episodes
    env = SimonSaysVectorEnv(num_envs=n, tasks=list(task_space.names), horizon=cfg.task.horizon, backend=cfg.task.backend,
                             action_mask=cfg.task.action_mask)
    goals = np.repeat(np.arange(len(task_space)), episodes)
    obs, _ = env.reset(seed=seed, options={"task": goals})
    done = np.zeros(n, dtype=bool)
    success = np.zeros(n, dtype=bool)
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    items = np.zeros((n, len(env.item_names)), dtype=bool)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        while not done.all():
            batch = {k: torch.as_tensor(v) for k, v in obs.items()} if isinstance(obs, dict) else torch.as_tensor(obs)
            logits = module.forward_inference({"obs": batch})["action_dist_inputs"]
            if greedy:
                actions = logits.argmax(-1)
            else:
                actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
            obs, reward, terminated, truncated, info = env.step(actions.numpy())
            # Only the first episode of each slot counts; later (autoreset) ones are ignored.
            live = ~done
            success |= live & info["success"]
            returns += np.where(live, reward, 0.0)
            lengths += live
            items |= live[:, None] & info["items_obtained"]
            done |= terminated | truncated
    env.close()
    return EpisodeOutcomes(task=goals.astype(np.int64), success=success, episode_return=returns,
                           length=lengths, items_obtained=items, evaluation=True)


def evaluate_policy(module, cfg: ExperimentConfig, episodes: int, greedy: bool, seed: int) -> dict[str, float]:
    """Success rate per task over `episodes` fresh episodes each."""
    outcomes = evaluation_episodes(module, cfg, episodes, greedy, seed)
    names = resolve_task_space(cfg).names
    per_task = outcomes.success.reshape(len(names), episodes).mean(axis=1)
    return dict(zip(names, per_task.tolist()))


def best_success_per_task(per_group: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Each task's success rate from the group (network) that serves it best, when groups overlap."""
    best: dict[str, float] = {}
    for success in per_group:
        for task, rate in success.items():
            best[task] = max(best.get(task, rate), rate)
    return best


def run_evaluation(run: str, episodes: int | None = None, greedy: bool = False, seed: int = 0, run_dir: str = "runs") -> dict[str, float]:
    """`mto eval`: print and return the per-task success table."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    ckpt, cfg = resolve_checkpoint(run, run_dir)
    module = RLModule.from_checkpoint(str(ckpt / MODULE_SUBDIR))
    check_module_fits(module, cfg, ckpt)
    episodes = episodes or cfg.training.eval_episodes_per_task
    results = evaluate_policy(module, cfg, episodes, greedy, seed)
    threshold = cfg.training.mastery_threshold
    rows = [(t, s, "yes" if s >= threshold else "") for t, s in results.items()]
    console.print(task_table(f"Evaluation of {ckpt} ({episodes} episodes per task)", rows, ["task", "success_rate", "mastered"]))
    console.print(f"mean success {np.mean(list(results.values())):.3f}; mastered {sum(s >= threshold for s in results.values())}/{len(results)}")
    return results
