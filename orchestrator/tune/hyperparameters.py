"""`mto tune`: a Ray Tune search over the hyperparameters of an RL (Simon Says, RLlib PPO) config.

The config's ``tune.search_space`` maps config paths (``rl.lr``, ``model.hidden``,
``curriculum.params.uniform_mix``, ...) to Ray Tune samplers (``{loguniform: [1e-4, 1e-2]}``,
``{grid: [...]}``, ...; `orchestrator.tune.config.SAMPLERS`). Before anything starts, every
key is checked against the config schema and the config is validated at every extreme or
listed value of the space (all combinations, or every pair of keys when there are too many),
so a search that would draw a refused config stops as a usage error. Each trial
(`orchestrator.tune.rl_trials.rl_hyperparameter_trial`) trains the config with its sampled
values the way `mto train` does and is scored on fresh episodes per task; the search session,
the Tune experiment and the nested MLflow runs are those of `orchestrator.tune.search`.
The best trial's full config is written as ``best_config.yaml`` in the search folder and
logged on the parent run, so ``mto train best_config.yaml`` trains it.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import mlflow
import yaml
from pydantic import BaseModel

from orchestrator.config import ConfigError, ExperimentConfig, section_model
from orchestrator.runs.progress import console
from orchestrator.runs.redaction import redacted
from orchestrator.tune.config import sampler_extremes
from orchestrator.tune.rl_trials import rl_hyperparameter_trial, sampled_config, trial_resources
from orchestrator.tune.search import SearchResult, _fit, _log_nested, _search_session, _trial_metrics

KIND = "tune"
BEST_CONFIG = "best_config.yaml"
RESULTS = "tune_results"
# Sections and keys a search over an RL run's hyperparameters has no business changing.
NOT_SEARCHABLE = frozenset({"name", "run_dir", "tune", "tracking", "supervised", "offline", "groups",
                            "task.family", "task.dataset", "task.dataset_params"})
# Combinations of extreme values checked exhaustively up to this many; beyond, every pair of keys.
MAX_CHECKED_POINTS = 4096


# ----------------------------------------------------------------------------- the search space


def _is_free_mapping(annotation: Any) -> bool:
    """A ``dict[str, Any]`` field (``curriculum.params``, ...): any key below it may be searched."""
    import typing

    return typing.get_origin(annotation) is dict


def search_space_keys(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[str]:
    """Every config path a search space may name, as YAML spells it; ``<name>`` stands for any key
    of a free-form mapping (``curriculum.params.<name>``)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        if key in NOT_SEARCHABLE:
            continue
        section = section_model(field.annotation)
        if section is not None:
            keys += search_space_keys(section, key + ".")
        elif _is_free_mapping(field.annotation):
            keys.append(key + ".<name>")
        else:
            keys.append(key)
    return keys


def canonical_key(key: str) -> str | None:
    """``key`` as YAML spells it (``rl.lambda_`` -> ``rl.lambda``), or None when no config key has that path."""
    model: type[BaseModel] | None = ExperimentConfig
    parts = key.split(".")
    out: list[str] = []
    for i, part in enumerate(parts):
        found = next(((n, f) for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if found is None:
            return None
        name, field = found
        out.append(field.alias or name)
        if ".".join(out) in NOT_SEARCHABLE:
            return None
        section = section_model(field.annotation)
        if section is not None:
            model = section
            continue
        rest = parts[i + 1:]
        if _is_free_mapping(field.annotation):
            return ".".join(out + rest) if len(rest) == 1 and rest[0] else None
        return ".".join(out) if not rest else None
    return None  # a whole section is not one value


def canonical_space(space: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """The search space with every key checked and spelled as in YAML; `ConfigError` names a bad key
    and lists the valid ones."""
    import difflib

    valid = search_space_keys()
    out: dict[str, dict[str, Any]] = {}
    for key, spec in space.items():
        canonical = canonical_key(key)
        if canonical is None:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: tune.search_space: unknown key '{key}';{hint} valid keys: {', '.join(valid)}")
        if canonical in out:
            raise ConfigError(f"{source}: tune.search_space: '{key}' and another key both name {canonical}; keep one")
        out[canonical] = spec
    return out


def extreme_points(space: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Points of the space where the config is checked before the search: every combination of each
    key's extreme or listed values (`sampler_extremes`), or, when that is more than
    ``MAX_CHECKED_POINTS``, every combination for each pair of keys (the others as in the config)."""
    values = {key: sampler_extremes(spec) for key, spec in space.items()}
    keys = list(values)
    if math.prod(len(v) for v in values.values()) <= MAX_CHECKED_POINTS:
        return [dict(zip(keys, combo)) for combo in itertools.product(*values.values())]
    points = [{key: v} for key in keys for v in values[key]]
    for a, b in itertools.combinations(keys, 2):
        points += [{a: va, b: vb} for va in values[a] for vb in values[b]]
    return points


def check_search_space(cfg: ExperimentConfig, source: str) -> None:
    """Everything `mto tune` needs of a config, checked before Ray starts or anything is written."""
    if cfg.is_supervised:
        raise ConfigError(f"{source}: task.family: `mto tune` searches the hyperparameters of RL (RLlib PPO) runs: "
                          f"valid choices: simon_says, not '{cfg.task.family}'")
    if cfg.groups is not None:
        raise ConfigError(f"{source}: groups: `mto tune` trains one network per trial; remove groups")
    if not cfg.tune.search_space:
        raise ConfigError(f"{source}: tune.search_space: empty; map config paths to samplers, e.g. "
                          f"`rl.lr: {{loguniform: [0.0001, 0.01]}}`; valid keys: {', '.join(search_space_keys())}")
    space = canonical_space(cfg.tune.search_space, source)
    for key, spec in space.items():  # Ray Tune's own checks (a q that does not divide a bound, ...)
        try:
            tune_sampler(spec)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: tune.search_space.{key}: Ray Tune refuses {spec}: {exc}") from None
    base = cfg.to_dict()
    for point in extreme_points(space):
        sampled_config(base, point, f"{source}: tune.search_space: a trial could draw {_show(point)}, which")


def _show(values: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in values.items()) + "}"


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, list) else str(value)


def tune_sampler(spec: dict[str, Any]) -> Any:
    """One search-space spec as the Ray Tune sampler of the same name (``grid`` -> ``tune.grid_search``)."""
    from ray import tune

    (name, args), = spec.items()
    if name == "grid":
        return tune.grid_search(list(args))
    if name == "choice":
        return tune.choice(list(args))
    return getattr(tune, name)(*args)


def param_space(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tune's ``param_space``: one sampler per (YAML-spelled) config path."""
    return {key: tune_sampler(spec) for key, spec in space.items()}


# ----------------------------------------------------------------------------- the search


def run_tune(config_path: str | Path, overrides: tuple[str, ...] = (), address: str | None = None,
             resume: bool = False) -> SearchResult:
    """`mto tune`: one Tune trial per sampled config, each a nested MLflow run; the best written out."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    with _search_session(config_path, overrides, KIND, resume, address, check=check_search_space) as session:
        cfg, search_path, state, tracking_uri, experiment_id, parent_id, client = session
        space = canonical_space(cfg.tune.search_space, str(config_path))
        base = cfg.to_dict()
        iterations = cfg.tune.budget_iterations or cfg.training.iterations
        max_env_steps = cfg.tune.budget_env_steps or cfg.training.max_env_steps
        params = {"config": base, "objective": cfg.tune.objective, "iterations": iterations,
                  "max_env_steps": max_env_steps, "trial_cpus": cfg.tune.trial_cpus}
        tune_config: dict[str, Any] = {"num_samples": cfg.tune.num_samples,
                                       "search_alg": BasicVariantGenerator(random_state=cfg.seed)}
        if cfg.tune.scheduler == "asha":
            tune_config.update(metric="objective", mode="max", scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=iterations, grace_period=min(cfg.tune.grace_period, iterations)))
        grid_points = math.prod(len(spec["grid"]) for spec in space.values() if "grid" in spec)
        budget = f"{iterations} iterations" + (f" or {max_env_steps} env steps" if max_env_steps else "")
        console.print(f"[bold]mto tune[/] {grid_points * cfg.tune.num_samples} trials over {', '.join(space)}; "
                      f"each {budget}, ranked by {cfg.tune.objective} on fresh episodes")

        def resources(values: dict[str, Any]):
            try:  # a trial's own placement group, should the search space change its actors
                return trial_resources(sampled_config(base, {k: values[k] for k in space if k in values}, "tune trial"))
            except ConfigError:  # the trial reports the config's refusal itself
                return trial_resources(cfg)

        grid = _fit("trials", search_path, rl_hyperparameter_trial, params, param_space(space), cfg, resume,
                    ("objective", "online/mean_success", "env_steps_total"), resources=resources,
                    tune_config=tune_config, fail_on_error=False)
        trials = _log_trials(grid, space, client, experiment_id, parent_id)
        ranked = rank_trials(trials)
        if not ranked or ranked[0]["status"] != "done":
            errors = [t["error"] for t in trials if t.get("error")]
            raise RuntimeError(f"no `mto tune` trial finished its evaluation; first error: {errors[0] if errors else 'none'}")
        best = ranked[0]
        best_path = write_best_config(search_path, base, best, config_path, parent_id, cfg.tune.objective)
        _log_tune_parent(search_path, ranked, best, best_path, cfg.tune.objective)
    console.print(results_table(ranked, list(space), cfg.tune.objective))
    console.print(f"best: trial {best['trial']} ({cfg.tune.objective} {best['objective']:.4g}) {_show(best['values'])}"
                  f"  -> {best_path}\n  train it: mto train {best_path}")
    return SearchResult(parent_id, search_path, tracking_uri, ranked, best)


def _log_trials(grid, space: dict[str, Any], client, experiment_id: str, parent_id: str) -> list[dict[str, Any]]:
    """One row and one nested MLflow run (params: the sampled values) per Tune trial, in trial order."""
    trials = []
    for k, result in enumerate(sorted(grid, key=lambda r: Path(r.path).name)):
        values = {key: (result.config or {}).get(key) for key in space}
        metrics = _trial_metrics(result)
        if result.error is not None:
            status = "failed"
        elif (result.metrics or {}).get("evaluated") == 1.0:
            status = "done"
        else:
            status = "stopped early"
        row: dict[str, Any] = {"trial": k, "status": status, "values": values, **metrics}
        if result.error is not None:
            row["error"] = str(result.error).strip().splitlines()[-1][:500]
        row["run_id"] = _log_nested(client, experiment_id, parent_id, KIND, f"trial {k}", values, result,
                                    status="FAILED" if result.error is not None else "FINISHED")
        trials.append(row)
    return trials


def rank_trials(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first: evaluated trials by objective (ties: mean success), then trials ASHA stopped (by
    their running objective, which is not comparable), then failed ones; each gets its ``rank``."""
    order = {"done": 0, "stopped early": 1, "failed": 2}
    ranked = sorted(trials, key=lambda t: (order[t["status"]], -t.get("objective", -math.inf),
                                           -t.get("mean_success", -math.inf), t["trial"]))
    return [{**t, "rank": i + 1} for i, t in enumerate(ranked)]


def write_best_config(search_path: Path, base: dict[str, Any], best: dict[str, Any], config_path, parent_id: str,
                      objective: str) -> Path:
    """The search's config with the best trial's values, fully resolved and without a search space."""
    data = sampled_config(base, best["values"], "best trial").to_dict()
    data["tune"]["search_space"] = {}
    header = (f"# Best trial of `mto tune {config_path}` (search {search_path.name}, MLflow parent run {parent_id}):\n"
              f"# trial {best['trial']}, {objective} {best['objective']:.4g}, sampled {_show(best['values'])}\n"
              f"# Train it: mto train {search_path / BEST_CONFIG}\n")
    path = search_path / BEST_CONFIG
    path.write_text(header + yaml.safe_dump(redacted(data), sort_keys=False))  # logged as an artifact
    return path


def results_table(ranked: list[dict[str, Any]], keys: list[str], objective: str):
    """Rich table: rank, trial, sampled values, objective (and mean success), status."""
    from rich.table import Table

    table = Table(title=f"mto tune: trials by {objective} on fresh episodes")
    short = [k.rsplit(".", 1)[-1] for k in keys]  # rl.entropy_coeff -> entropy_coeff, where that names one key
    headers = short if len(set(short)) == len(short) else keys
    columns = ["rank", "trial", *headers, objective] + (["mean_success"] if objective != "mean_success" else []) + ["status"]
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < 2 else "right", overflow="fold")  # narrow terminals: wrap, never cut
    for t in ranked:
        scores = [t.get(objective), *([t.get("mean_success")] if objective != "mean_success" else [])]
        table.add_row(str(t["rank"]), str(t["trial"]), *[_fmt(t["values"][k], 3) for k in keys],
                      *["-" if s is None else f"{s:.4g}" for s in scores], t["status"])
    return table


def _log_tune_parent(search_path: Path, ranked: list[dict[str, Any]], best: dict[str, Any], best_path: Path,
                     objective: str) -> None:
    """The parent run: the best trial's values (params ``best/<path>``) and scores, the results table,
    and the best config."""
    from mlflow.exceptions import MlflowException

    try:  # a resumed search logs them again; the same values are fine, MLflow refuses changed ones
        mlflow.log_params({f"best/{k}": json.dumps(v) if isinstance(v, list) else v for k, v in best["values"].items()})
    except MlflowException:
        mlflow.set_tag("mto.best_params_changed_on_resume", "true")
    mlflow.log_metrics({"best/objective": best["objective"], "best/mean_success": best.get("mean_success", math.nan),
                        "best/items_mastered": best.get("items_mastered", math.nan),
                        "trials_done": sum(t["status"] == "done" for t in ranked),
                        "trials_failed": sum(t["status"] == "failed" for t in ranked)})
    mlflow.set_tags({"mto.best_trial": str(best["trial"]), "mto.best_run_id": best["run_id"],
                     "mto.best_config": str(best_path)})
    mlflow.log_artifact(str(best_path))
    keys = list(best["values"])
    scores = [objective] + (["mean_success"] if objective != "mean_success" else [])
    lines = ["| " + " | ".join(["rank", "trial", *keys, *scores, "status"]) + " |",
             "| --- " * (len(keys) + len(scores) + 3) + "|"]
    for t in ranked:
        lines.append(f"| {t['rank']} | {t['trial']} | " + " | ".join(_fmt(t["values"][k]) for k in keys)
                     + "".join(f" | {t.get(s, math.nan):.4g}" for s in scores) + f" | {t['status']} |")
    for name, text in ((f"{RESULTS}.md", "\n".join(lines) + "\n"), (f"{RESULTS}.json", json.dumps(ranked, indent=2))):
        (search_path / name).write_text(text)
        mlflow.log_artifact(str(search_path / name))
