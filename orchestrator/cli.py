"""`mto`: the command line, and the Python API that mirrors it.

Exit codes: 0 success, 1 the work itself failed, 2 usage error (bad flag, bad
config, unknown run): nothing is started or written in that case.

`train`, `evaluate` and `report` are what `mto train`, `mto eval` and `mto report` call: the
command line parses its flags into their arguments and turns `ConfigError` (the exit-2 class of
errors) into exit code 2, so a script and the command line take one code path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from orchestrator.config import ExperimentConfig
    from orchestrator.runs.run_folder import TrainingSummary

USAGE_ERROR = 2


def _add_cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else start a local Ray)")


def _add_run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir",
        default="runs",
        help="where runs live (default MLflow store: sqlite under it; MLFLOW_TRACKING_URI overrides)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mto", description="Multi-task training orchestrator on Ray (RLlib, Ray Train, MLflow)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train from a config file, or resume a run")
    train.add_argument("config", nargs="?", help="experiment YAML (configs/*.yaml); optional with --resume")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set rl.lr=1e-3 (repeatable)")
    train.add_argument("--resume", metavar="RUN", help="continue this MLflow run (id or name) from its last checkpoint")
    train.add_argument("--no-live", action="store_true", help="plain log lines instead of a live progress bar")
    _add_cluster_flags(train)
    train.add_argument("--run-dir", default=None,
                       help="where runs live (a new run: overrides the config's run_dir; --resume: where to find "
                            "the run; default MLflow store: sqlite under it; MLFLOW_TRACKING_URI overrides)")

    ev = sub.add_parser("eval", help="run N episodes per task with a checkpoint's policy; print per-task success")
    ev.add_argument("run", help="MLflow run id or name, or a checkpoint directory")
    ev.add_argument("--episodes", type=int, default=None, help="episodes per task (default: training.eval_episodes_per_task)")
    ev.add_argument("--greedy", action="store_true", help="take the most likely action instead of sampling")
    ev.add_argument("--seed", type=int, default=0)
    _add_run_dir(ev)

    rep = sub.add_parser("report", help="read a run back from MLflow: per-task table and plots")
    rep.add_argument("run", help="MLflow run id or name")
    rep.add_argument("--out", default=None, help="folder for the PNG plots (default: report-<run name>)")
    _add_run_dir(rep)

    col = sub.add_parser("collect", help="run a config's offline behaviour policies on Ray; write a Parquet transition dataset")
    col.add_argument("config", help="experiment YAML with an `offline` section (configs/offline_*.yaml)")
    col.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    col.add_argument("--overwrite", action="store_true", help="replace offline.dataset if it already holds data")
    _add_cluster_flags(col)

    for name, text in (("tune-groups", "Ray Tune search for task groups by task affinity (TAG)"),
                       ("pareto", "Ray Tune sweep of Pareto MTL preference vectors")):
        search = sub.add_parser(name, help=text)
        search.add_argument("config", help="experiment YAML with a supervised task family (tune: section)")
        search.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a config value, e.g. --set tune.top_k=2 (repeatable)")
        search.add_argument("--resume", action="store_true", help="continue this config's latest interrupted search")
        _add_cluster_flags(search)

    tune = sub.add_parser("tune", help="Ray Tune search over an RL config's hyperparameters (tune.search_space); writes the best config")
    tune.add_argument("config", help="experiment YAML (simon_says) with a tune.search_space section")
    tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value, e.g. --set tune.num_samples=8 (repeatable)")
    tune.add_argument("--resume", action="store_true", help="continue this config's latest interrupted search")
    tune.add_argument("--run-dir", default=None,
                      help="where runs live (Tune results under <run dir>/tune, MLflow sqlite under it); default: the config's run_dir")
    _add_cluster_flags(tune)

    check = sub.add_parser("check", help="validate a config file (and overrides) without running anything")
    check.add_argument("config")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser


def _as_config_source(config: str | Path | Mapping[str, Any] | ExperimentConfig | None):
    """A config path as given, or plain data (a mapping as the YAML file would hold, or an
    `ExperimentConfig`'s `to_dict()`)."""
    if config is None or isinstance(config, (str, Path)):
        return config
    if isinstance(config, Mapping):
        return dict(config)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    from orchestrator.config import ConfigError

    raise ConfigError(f"config: give a YAML file path, a mapping or an ExperimentConfig, not {type(config).__name__}")


def _as_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> tuple[str, ...]:
    """`--set` strings as given; a mapping `{"rl.lr": 1e-3}` becomes `rl.lr=0.001` (values written as
    JSON, which YAML reads back as the same value: `"off"` stays a string, `None` is null)."""
    if isinstance(overrides, str):
        return (overrides,)
    if isinstance(overrides, Mapping):
        return tuple(f"{key}={json.dumps(value)}" for key, value in overrides.items())
    return tuple(overrides)


def run_training(
    config_path: str | Path | Mapping[str, Any] | None = None,
    overrides: tuple[str, ...] = (),
    resume: str | None = None,
    address: str | None = None,
    live: bool | None = None,
    run_dir: str = "runs",
):
    """`mto train`: train from a config file (or the same data as a mapping), or continue the run
    named by `resume` (an MLflow run id or name); dispatches to the kind of run (offline CQL,
    supervised on Ray Train, RL on RLlib).

    The config is fully validated before anything is started or written. Returns a `TrainingSummary`.
    """
    from orchestrator.config import config_from_dict, load_config
    from orchestrator.rl.validation import check_rllib_config
    from orchestrator.runs.run_folder import TrainerState, locate_resume
    from orchestrator.runs.session import training_run
    from orchestrator.runs.tracking import resolve_tracking_uri

    source = "<config mapping>" if isinstance(config_path, Mapping) else config_path
    if resume is None:
        if config_path is None:
            from orchestrator.config import ConfigError

            raise ConfigError("give a config file, or --resume RUN")
        if isinstance(config_path, Mapping):
            cfg = config_from_dict(dict(config_path), str(source), overrides)
        else:
            cfg = load_config(config_path, overrides)
        tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, cfg.run_dir)
        run_path, state = None, TrainerState()
    else:
        if isinstance(config_path, Mapping):
            from orchestrator.config import ConfigError

            raise ConfigError("resume: give the run (and optionally its config file), not a config mapping")
        cfg, tracking_uri, run_path, state = locate_resume(resume, config_path, overrides, run_dir)
    # What would stop the run later stops it here: exit 2, nothing written, a resumed run untouched.
    if cfg.offline is not None:  # the dataset is missing, moved or collected for other tasks
        from orchestrator.offline.training import load_offline_dataset

        load_offline_dataset(cfg)
    check_rllib_config(cfg, str(source) if resume is None else f"--resume {resume}")

    with training_run(cfg, tracking_uri, run_path, state, address) as run_path:
        if cfg.offline is not None:  # offline RL: CQL over a collected dataset on Ray Train, no RLlib
            from orchestrator.offline.training import train_offline

            summary = train_offline(cfg, run_path, state, live)
        elif cfg.is_supervised:
            from orchestrator.supervised.run import run_supervised

            summary = run_supervised(cfg, run_path, state, live)
        else:
            from orchestrator.rl.training import train_rl

            summary = train_rl(cfg, run_path, state, live)
    summary.tracking_uri = tracking_uri
    return summary


@contextmanager
def _tracking_uri_kept() -> Iterator[None]:
    """Leave `MLFLOW_TRACKING_URI` as the caller had it. `mlflow.set_tracking_uri` exports the run's
    store into the environment (for subprocesses), and `mto` reads that variable as the user's
    choice of store: without this a second `train(..., run_dir="B")` in one Python process would
    log into the first call's store under A."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        if os.environ.get("MLFLOW_TRACKING_URI") != before:
            import mlflow

            mlflow.set_tracking_uri(before)
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)


def train(
    config: str | Path | Mapping[str, Any] | ExperimentConfig | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    run_dir: str | Path | None = None,
    resume: str | None = None,
    address: str | None = None,
    live: bool | None = False,
) -> TrainingSummary:
    """Train, as `mto train CONFIG [--set KEY=VALUE ...] [--run-dir DIR]` does.

    Args:
        config: a YAML experiment file (`configs/*.yaml`), or the same data as a mapping (or an
            `ExperimentConfig`). Optional with `resume`, where a file only says where the run's
            MLflow store is.
        overrides: `--set` values, as strings (`["rl.lr=1e-3"]`) or a mapping (`{"rl.lr": 1e-3}`).
        run_dir: where runs live (a new run: replaces the config's `run_dir`; with `resume`: where
            to find the run). Default: the config's `run_dir` (`runs`).
        resume: continue this MLflow run (id or name) from its last checkpoint.
        address: the Ray cluster (default `RAY_ADDRESS`, else a local Ray, or the Ray this
            process already started with `ray.init`).
        live: `True` for the live progress display, `False` (default here) for plain log lines,
            `None` to let the terminal decide as `mto train` does.

    Returns:
        The run's `TrainingSummary`: MLflow run id, run folder, tracking URI, iterations, env
        steps, per-task success, mastered tasks and the last checkpoint.

    Raises:
        ConfigError: what `mto train` exits with code 2 for (bad config or override, unknown run,
            a resume that changes what the checkpoint is); nothing was started or written.
    """
    source = _as_config_source(config)
    sets = _as_overrides(overrides)
    if run_dir is not None and source is not None and resume is None:
        sets += (f"run_dir={run_dir}",)  # --run-dir on a new run is the config's run_dir
    with _tracking_uri_kept():
        return run_training(source, sets, resume=resume, address=address, live=live,
                            run_dir=str(run_dir) if run_dir is not None else "runs")


def evaluate(
    run: str | Path,
    *,
    episodes: int | None = None,
    greedy: bool = False,
    seed: int = 0,
    run_dir: str | Path = "runs",
) -> dict[str, float]:
    """Run fresh episodes per task with a checkpoint's policy, as `mto eval RUN` does.

    Args:
        run: an MLflow run id or name (of the store under `run_dir`), or a checkpoint directory.
        episodes: episodes per task (default: the run's `training.eval_episodes_per_task`).
        greedy: take the most likely action instead of sampling.
        seed: seed of the evaluation environments.
        run_dir: where runs live (its MLflow store; `MLFLOW_TRACKING_URI` overrides).

    Returns:
        Success rate per task.

    Raises:
        ConfigError: unknown run, or a checkpoint whose policy does not fit its config (exit 2).
    """
    from orchestrator.rl.evaluate import run_evaluation

    with _tracking_uri_kept():
        return run_evaluation(str(run), episodes=episodes, greedy=greedy, seed=seed, run_dir=str(run_dir))


def report(run: str, *, out: str | Path | None = None, run_dir: str | Path = "runs") -> dict[str, dict[str, float]]:
    """Read a run back from MLflow, print its per-task table and draw its plots, as `mto report RUN` does.

    Args:
        run: an MLflow run id or name.
        out: folder for the PNG plots (default: `report-<run name>`).
        run_dir: where runs live (its MLflow store; `MLFLOW_TRACKING_URI` overrides).

    Returns:
        Per task: `success_rate`, `probability`, `learning_progress`, `episodes` (RL runs), or the
        run's latest per-task metrics (supervised runs).

    Raises:
        ConfigError: unknown run (exit 2).
    """
    from orchestrator.runs.report import run_report

    with _tracking_uri_kept():
        return run_report(run, out=str(out) if out is not None else None, run_dir=str(run_dir))


def main(argv: Sequence[str] | None = None) -> int:
    from orchestrator.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            train(args.config, args.overrides, run_dir=args.run_dir or None, resume=args.resume,
                  address=args.address, live=False if args.no_live else None)
        elif args.command == "eval":
            evaluate(args.run, episodes=args.episodes, greedy=args.greedy, seed=args.seed, run_dir=args.run_dir)
        elif args.command == "report":
            report(args.run, out=args.out, run_dir=args.run_dir)
        elif args.command == "collect":
            from orchestrator.config import load_config
            from orchestrator.offline.collection import collect

            collect(load_config(args.config, tuple(args.overrides)), address=args.address, overwrite=args.overwrite)
        elif args.command in ("tune-groups", "pareto"):
            from orchestrator.tune.search import run_pareto, run_tune_groups

            search = run_tune_groups if args.command == "tune-groups" else run_pareto
            search(args.config, tuple(args.overrides), address=args.address, resume=args.resume)
        elif args.command == "tune":
            from orchestrator.tune.hyperparameters import run_tune

            overrides = tuple(args.overrides) + ((f"run_dir={args.run_dir}",) if args.run_dir is not None else ())
            run_tune(args.config, overrides, address=args.address, resume=args.resume)
        elif args.command == "check":
            from orchestrator.config import load_config

            from orchestrator.rl.validation import check_rllib_config

            cfg = load_config(args.config, tuple(args.overrides))
            check_rllib_config(cfg, args.config)
            if cfg.tune.search_space:  # what `mto tune` checks before it writes anything
                from orchestrator.tune.hyperparameters import check_search_space

                check_search_space(cfg, args.config)
            print(f"{args.config}: ok ({cfg.name})")
    except ConfigError as exc:
        print(f"mto {args.command}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
