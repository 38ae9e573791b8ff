"""A run's folder on disk: its driver state (counters, latest checkpoint, MLflow run id), its
summary, and finding a run again by MLflow id or name for `--resume` and `mto eval`."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orchestrator.config import ConfigError, ExperimentConfig, load_config
from orchestrator.runs.confinement import require_inside
from orchestrator.runs.resume_settings import check_resume_settings
from orchestrator.runs.tracking import CONFIG_ARTIFACT, RUN_PATH_TAG, find_run, resolve_tracking_uri

STATE_FILE = "trainer_state.json"
GROUPS_TAG = "mto.groups"  # on the parent run of a `groups:` RL run


@dataclass
class TrainerState:
    """What the driver needs to continue a run: counters and the latest checkpoint."""

    iteration: int = 0
    env_steps: int = 0
    checkpoint: str | None = None
    mlflow_run_id: str | None = None
    history: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written state file

    @classmethod
    def load(cls, path: Path) -> "TrainerState":
        return cls(**json.loads(path.read_text()))


@dataclass
class TrainingSummary:
    """What `mto train` returns: where things are and how the run ended."""

    run_id: str
    run_path: Path
    tracking_uri: str
    iterations: int
    env_steps: int
    success_rate: dict[str, float]
    mastered: list[str]
    checkpoint: str | None


def new_run_path(cfg: ExperimentConfig) -> Path:
    """A fresh, uniquely named folder for a run under ``cfg.run_dir``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(cfg.run_dir).resolve() / f"{cfg.name}-{stamp}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def read_trainer_state(run_path: Path, what: str) -> TrainerState:
    """The run folder's driver state; if a crash or a damaged disk tore it, the copy saved in the
    newest checkpoint that holds a readable one (with one warning). `ConfigError` when there is none."""
    from orchestrator.runs.checkpoints import checkpoint_dirs
    from orchestrator.runs.torn_files import warn_torn

    path = Path(run_path) / STATE_FILE
    try:
        return TrainerState.load(path)
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, fields missing or unknown
        problem = f"{type(exc).__name__}: {exc}"
    for folder in reversed(checkpoint_dirs(run_path)):
        try:
            state = TrainerState.load(folder / STATE_FILE)
        except (OSError, ValueError, TypeError):
            continue
        warn_torn(path, f"{problem}; using the copy saved in checkpoint {folder.name} (iteration {state.iteration}); "
                        "the next save replaces the torn file")
        return state
    raise ConfigError(f"{what}: {path} is unreadable ({problem}) and no checkpoint holds a copy of it")


def locate_resume(resume: str, config_path: str | None, overrides: tuple[str, ...], run_dir: str):
    """Find the run to continue: its config (saved one plus overrides), tracking URI, folder and state."""
    if config_path is not None:
        base = load_config(config_path)
        uri = resolve_tracking_uri(base.tracking.tracking_uri, base.run_dir)
        run_dir = base.run_dir
    else:
        uri = resolve_tracking_uri(None, run_dir)
    run_path, state = locate_run(resume, uri, run_dir, f"--resume {resume}", grouped_ok=True, offline_ok=True)
    saved = load_config(run_path / CONFIG_ARTIFACT)
    cfg = load_config(run_path / CONFIG_ARTIFACT, overrides)
    # Before a checkpoint is checked (and a bad one set aside): a refused resume changes nothing.
    check_resume_settings(saved, cfg, f"--resume {resume}")
    return cfg, uri, run_path, checked_resume_state(run_path, state, f"--resume {resume}")


def checked_resume_state(run_path: Path, state: TrainerState, what: str) -> TrainerState:
    """``state`` if its checkpoint is intact, else the state saved inside the newest intact
    checkpoint (the bad ones are named and set aside); `ConfigError` when none is intact, or when the
    checkpoint lies outside ``run_path`` (nothing is read or renamed then)."""
    from orchestrator.runs.checkpoints import usable_checkpoint

    if not state.checkpoint:
        return state
    _require_own_checkpoint(state.checkpoint, run_path, what)
    folder = usable_checkpoint(run_path, Path(state.checkpoint), what)
    _require_own_checkpoint(folder, run_path, what)  # a fallback could be a symlink out of the folder
    if str(folder) == state.checkpoint:
        return state
    saved = folder / STATE_FILE
    chosen = TrainerState.load(saved) if saved.is_file() else TrainerState(**asdict(state))
    chosen.checkpoint, chosen.mlflow_run_id = str(folder), state.mlflow_run_id
    return chosen


def _require_own_checkpoint(checkpoint: str | Path, run_path: Path, what: str) -> None:
    require_inside(checkpoint, run_path, what, f"{run_path / STATE_FILE} names as the checkpoint",
                   "a run loads checkpoints from its own folder only; to load that one anyway, "
                   "give its folder on the command line (`mto eval DIR`)")


def locate_run(run: str, tracking_uri: str, run_dir: str | Path, what: str, grouped_ok: bool = False,
               offline_ok: bool = False) -> tuple[Path, TrainerState]:
    """The run folder and driver state of an MLflow run (id or name) that has a checkpoint
    (or, with ``grouped_ok``, the parent of a `groups:` run, whose groups hold the checkpoints;
    with ``offline_ok``, an offline CQL run, whose checkpoints only `--resume` reads).

    The folder must lie under ``run_dir`` and its checkpoint inside the folder: the MLflow tag and
    the state file that name them are data anyone with write access to the store can change.
    Raises `ConfigError` (a usage error, prefixed by `what`) when there is nothing to use.
    """
    try:
        found = find_run(run, tracking_uri)
    except LookupError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    tagged = found.data.tags.get(RUN_PATH_TAG, "")
    run_path = require_inside(tagged, run_dir, what, f"the MLflow tag {RUN_PATH_TAG} of run {found.info.run_id} names "
                              "as the run folder", "give --run-dir the directory that holds the run's folder")
    if found.data.tags.get("mto.kind") == "offline" and not offline_ok:
        raise ConfigError(f"{what}: '{run}' is an offline CQL run, which has no RLlib policy to load; its Q-network "
                          f"is the MLflow artifact checkpoint/ (q_network.pt); `mto train --resume {run}` continues it")
    state_file = run_path / STATE_FILE
    if not state_file.is_file():
        raise ConfigError(f"{what}: run folder {run_path} has no {STATE_FILE}")
    state = read_trainer_state(run_path, what)
    grouped = GROUPS_TAG in found.data.tags
    if grouped and not grouped_ok:
        groups = [f"{found.info.run_name}-group{g}" for g in range(len(json.loads(found.data.tags[GROUPS_TAG])))]
        raise ConfigError(f"{what}: '{run}' trained one network per group; use a group's own run: {', '.join(groups)}")
    if not state.checkpoint and not grouped:
        raise ConfigError(f"{what}: the run has no checkpoint yet")
    if state.checkpoint:
        _require_own_checkpoint(state.checkpoint, run_path, what)
    return run_path, state
