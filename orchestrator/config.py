"""Experiment configuration: one YAML file -> one typed, validated `ExperimentConfig`.

Everything that can be wrong with a config is found here, before Ray starts or a
run directory is created, and reported as a `ConfigError` that names the file,
the field path and the valid choices.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.offline.config import OfflineConfig
from orchestrator.rl.sac_config import SACConfig
from orchestrator.tune.config import TuneConfig


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false are booleans.

    YAML 1.1 (PyYAML's default) also reads on/off/yes/no as booleans, which silently
    turns `bonus.mode: off` into `False`.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (YAML itself keeps the last one and drops the first)."""


def _mapping_without_duplicates(loader: _Yaml12Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    # PyYAML's last-one-wins silently drops a whole first `rl:` section when a second one follows.
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` merges on purpose; keys written beside it override it
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:
            continue  # an unhashable key: SafeConstructor refuses it itself, with its position
        if first is not None:
            raise DuplicateKeyError(f"duplicate key '{key}' on line {first} and line {line} "
                                    "(YAML would keep only the last and drop the first; write it once)")
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:map", lambda loader, node: _construct_map(loader, node))


def _construct_map(loader: _Yaml12Loader, node: yaml.MappingNode):
    data: dict = {}
    yield data
    data.update(_mapping_without_duplicates(loader, node))


def read_yaml(text: str) -> Any:
    """Parse YAML text the way config files and `--set` values are read (duplicate keys refused)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says where and why."""


def one_path_component(value: str) -> str:
    """``value`` if it names one file or folder (run folders and report folders are named after it)."""
    if value in (".", "..") or any(sep in value for sep in ("/", "\\", "\0")):
        raise ValueError(f"'{value}' must be one path component: no '/', '\\', '..' or '.'")
    return value


class _Section(BaseModel):
    # Unknown keys are typos far more often than intentional: refuse them. A float field never
    # takes inf or nan (`lr: .inf` passed `gt=0`), nor the strings "inf" / "nan".
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)


def layer_sizes_positive(sizes: list[int]) -> list[int]:
    """A hidden layer of size 0 builds a network that silently computes nothing: refuse it."""
    if any(size < 1 for size in sizes):
        raise ValueError(f"layer sizes must be >= 1, got {sizes}")
    return sizes


class TaskConfig(_Section):
    """What to train on."""

    family: Literal["simon_says", "metaworld", "multi_digit", "grouped_regression", "pareto_toy"] = Field(
        "simon_says", description="simon_says (PPO) and metaworld (SAC, extra mto[metaworld]): RL with RLlib; the "
        "others: supervised multi-task datasets on Ray Train"
    )
    task_set: Literal["MT10", "MT50"] = Field("MT10", description="metaworld: the benchmark's task set")
    dataset: str | None = Field(
        None, description="supervised: a Parquet dataset file; null = generate it into the run folder"
    )
    dataset_params: dict[str, Any] = Field(
        default_factory=dict, description="supervised: generator parameters (e.g. mnist_path, num_groups)"
    )
    backend: Literal["techtree", "crafter", "minerl"] = Field(
        "techtree", description="techtree: symbolic Minecraft; crafter / minerl need their extras"
    )
    tasks: list[str] | None = Field(
        None, description="goal items to train on; null = every obtainable item"
    )
    max_depth: int | None = Field(
        None, ge=0, description="keep only tasks whose prerequisite depth is <= this"
    )
    horizon: int = Field(300, ge=1, description="steps before an episode is truncated")
    action_mask: bool = Field(
        False, description="techtree: the env reports which actions would change the state and the policy "
        "samples only those (RLlib's action-masking pattern; observations become a Dict)"
    )

    @field_validator("tasks")
    @classmethod
    def _tasks_listed_once(cls, tasks: list[str] | None) -> list[str] | None:
        if tasks is not None and not tasks:
            raise ValueError("an empty list trains on nothing; name at least one task, or null for every task")
        if tasks is not None and len(set(tasks)) != len(tasks):
            raise ValueError(f"{sorted({t for t in tasks if tasks.count(t) > 1})} listed more than once; list each once")
        return tasks


class CurriculumConfig(_Section):
    """Which task each episode trains on."""

    kind: Literal["uniform", "learning_progress"] = Field("learning_progress", description="task scheduler")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the scheduler (see README: curriculum parameters)",
    )
    refresh_every_episodes: int = Field(
        64, ge=1, description="env-side copy of the distribution is refreshed after this many episodes"
    )
    refresh_every_seconds: float = Field(
        5.0, gt=0, description="... or after this many seconds (only with reproducible: false)")
    reproducible: bool = Field(
        False, description="true: refresh by episodes only, waiting at each refresh until the CurriculumActor has "
        "absorbed the runner's episodes (one round trip per refresh_every_episodes): one seed, one run on one "
        "machine (the shipped configs that sample in the driver set it); false: never wait, refresh by episodes "
        "or seconds")
    report_every_episodes: int = Field(32, ge=1, description="episode outcomes are sent in batches of this size")
    publish_every_seconds: float | None = Field(
        None, ge=0, description="the CurriculumActor recomputes the distribution it serves at most this often; null = "
        "refresh_every_seconds (so a runner's copy is at most about 2 versions behind), 0 with reproducible: true "
        "(every refresh sees every absorbed episode). 0 publishes on every request after new outcomes, which at "
        "hundreds of EnvRunners floods the actor (benchmarks/curriculum_scale.py, docs/scaling.md)")
    checkpoint_every_seconds: float = Field(30.0, gt=0, description="the CurriculumActor saves its state this often (restored if it restarts)")
    evaluation_episodes_per_task: int = Field(
        8, ge=1, description="with params.success_source=evaluation: fresh episodes per task at each evaluation"
    )


class BonusConfig(_Section):
    """The within-episode exploration bonus for obtaining new items."""

    mode: Literal["off", "static", "dynamic"] = Field(
        "dynamic", description="off; static: every eligible item, all run long; dynamic: only eligible items "
        "not yet obtained reliably"
    )
    size: float = Field(0.1, ge=0.0, description="reward added the first time an item is obtained in an episode "
                        "(the goal pays 1)")
    threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="dynamic mode: an item whose success rate as a goal (or, for an item "
        "that is not a task, share of recent episodes obtaining it) is at or above this stops earning the bonus"
    )
    items: Literal["tasks", "all"] = Field(
        "tasks", description="which items are eligible: tasks (the paper's form: items that are also tasks, "
        "so the bonus fades as tasks are mastered); all: every item, non-task ones by non_task_items"
    )
    non_task_items: Literal["until_obtained_reliably", "always"] = Field(
        "until_obtained_reliably", description="with items: all, dynamic mode: an item that is never a goal pays "
        "until obtained in threshold of recent episodes, or always (the old behaviour)"
    )
    count_milestones: bool = Field(
        False, description="techtree: also pay, once per episode, for first holding the count of an ingredient "
        "that a recipe of a paying item needs (3 cobblestone for a stone pickaxe, 8 for a furnace); the paper's "
        "bonus cannot tell 1 from 8, so such items stay undiscovered"
    )
    max_per_episode: float | None = Field(
        0.5, gt=0, allow_inf_nan=False, description="the most bonus one episode can earn (null: no limit); below the goal's 1, "
        "collecting items never pays more than finishing (without it, on the whole tech tree the bonus was 94% "
        "of the return and LP + dynamic bonus mastered 13 items against LP's 56)"
    )
    scope: Literal["every_episode", "goal_prerequisites"] = Field(
        "every_episode", description="every_episode: a bonus item pays whatever the episode's goal (the paper's "
        "form; all_items is the old name); goal_prerequisites: only items the episode's goal needs"
    )

    @model_validator(mode="before")
    @classmethod
    def _old_scope_name(cls, data: Any) -> Any:
        # `all_items` was this scope's name before `items` existed; it meant every episode.
        if isinstance(data, dict) and data.get("scope") == "all_items":
            data = {**data, "scope": "every_episode"}
        return data


class RLConfig(_Section):
    """RLlib (new API stack) PPO and its actors."""

    algorithm: Literal["PPO", "SAC"] = Field(
        "PPO", description="RLlib algorithm: PPO (simon_says) or SAC (metaworld; settings in the sac section)")
    num_env_runners: int = Field(1, ge=0, description="EnvRunner actors (0 = sample in the driver)")
    num_envs_per_env_runner: int = Field(64, ge=1, description="environments stepped as one numpy vector env per runner")
    num_cpus_per_env_runner: float = Field(1.0, gt=0, description="CPUs reserved per EnvRunner")
    num_learners: int = Field(0, ge=0, description="Learner actors (0 = learn in the driver)")
    num_gpus_per_learner: float = Field(0.0, ge=0, description="GPUs per Learner (0 on CPU machines)")
    learner_threads: int | None = Field(
        None, ge=1,
        description="torch threads of a learner in the driver (num_learners=0); null = CPUs left over by the EnvRunners",
    )
    rollout_fragment_length: int | Literal["auto"] = Field("auto", description="steps per env per sample call")
    lean_connectors: bool = Field(
        False,
        description="lean connectors (Box or Dict-of-Box obs, stateless model; Discrete actions with PPO, a bounded "
                    "Box with SAC) instead of RLlib's default per-episode pipelines: EnvRunners sample whole batches "
                    "in array operations, one np.stack in and one categorical (PPO) or squashed-Gaussian (SAC) draw "
                    "out; PPO's learner builds its train batch and GAE in array operations",
    )
    overlap_sampling: bool = Field(
        False,
        description="EnvRunner actors sample the next batch while the learner updates on this one (needs "
                    "num_env_runners >= 1). PPO (needs lean_connectors): the policy lag becomes one update "
                    "(reported as policy_lag), corrected by decoupled PPO (clip against the policy the update "
                    "starts from, importance weight to the behaviour policy on the advantage). SAC: off-policy, "
                    "a round sampled with the weights from before the previous round's updates goes to replay",
    )
    max_policy_lag: int = Field(
        1, ge=0,
        description="PPO with overlap_sampling: env steps sampled more than this many updates ago are dropped, not "
                    "trained on",
    )
    train_batch_size: int = Field(4096, ge=1, description="env steps per learner per iteration")
    minibatch_size: int = Field(512, ge=1, description="SGD minibatch size")
    num_epochs: int = Field(4, ge=1, description="passes over each train batch")
    lr: float = Field(3e-4, gt=0, description="learning rate")
    gamma: float = Field(0.99, gt=0, le=1, description="discount")
    lambda_: float = Field(0.95, ge=0, le=1, alias="lambda", description="GAE lambda")
    entropy_coeff: float = Field(0.01, ge=0, description="entropy bonus weight")
    clip_param: float = Field(0.2, gt=0, description="PPO ratio clip")
    vf_loss_coeff: float = Field(0.5, ge=0, description="value loss weight")

    @model_validator(mode="after")
    def _minibatch_fits(self) -> "RLConfig":
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must be <= train_batch_size ({self.train_batch_size})"
            )
        if self.overlap_sampling and self.algorithm == "PPO" and not self.lean_connectors:
            raise ValueError("overlap_sampling needs lean_connectors: true (its learner connector corrects for the "
                             "policy lag, decoupled PPO)")
        if self.overlap_sampling and self.num_env_runners == 0:
            raise ValueError("overlap_sampling needs num_env_runners >= 1: with 0 the driver samples and learns in "
                             "turn, with nothing to overlap")
        return self


class ModelConfig(_Section):
    """The policy network."""

    hidden: list[int] = Field(default_factory=lambda: [256, 256], min_length=1, description="hidden layer sizes")
    activation: Literal["relu", "tanh", "silu"] = Field("relu", description="hidden activation (mlp only)")
    architecture: Literal["mlp", "shared_bottom", "separate_bottom", "model_patch", "soft_modular", "independent",
                          "care"] = Field(
        "mlp", description="mlp: RLlib's default network (task id as input); others: multi-task networks from `policies`"
    )
    architecture_params: dict[str, Any] = Field(default_factory=dict, description="knobs of the architecture")
    combiner: Literal["sum", "pcgrad", "mgda", "pareto_mtl"] = Field(
        "sum", description="how per-task gradients of the shared parameters are combined (multi-task architectures)"
    )
    combiner_params: dict[str, Any] = Field(default_factory=dict, description="parameters of the combiner")

    _hidden_positive = field_validator("hidden")(layer_sizes_positive)

    @model_validator(mode="after")
    def _combiner_needs_multitask_network(self) -> "ModelConfig":
        if self.combiner != "sum" and self.architecture == "mlp":
            raise ValueError(
                f"combiner '{self.combiner}' needs a multi-task architecture (shared_bottom, separate_bottom, "
                "model_patch, soft_modular, independent), not 'mlp'"
            )
        return self


class SupervisedConfig(_Section):
    """Supervised multi-task training on Ray Train (families other than simon_says)."""

    num_workers: int = Field(1, ge=1, description="Ray Train workers (data parallel; one per GPU on GPU nodes)")
    use_gpu: bool = Field(False, description="put each worker on a GPU")
    epochs: int = Field(10, ge=1, description="passes over the training split")
    batch_size: int = Field(256, ge=1, description="global batch, split across workers")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")


class TrainingConfig(_Section):
    """How long to train, and what counts as mastered."""

    iterations: int = Field(50, ge=1, description="stop after this many training iterations")
    max_env_steps: int | None = Field(None, ge=1, description="or after this many env steps, whichever first")
    checkpoint_every: int = Field(10, ge=1, description="iterations between checkpoints (and one at the end)")
    mastery_threshold: float = Field(0.9, gt=0, le=1, description="success rate at which a task counts as mastered")
    eval_episodes_per_task: int = Field(10, ge=1, description="episodes per task for `mto eval`")
    plot_every: int = Field(10, ge=1, description="iterations between plot uploads to MLflow")


class TrackingConfig(_Section):
    """MLflow."""

    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default: MLFLOW_TRACKING_URI, else sqlite under run_dir"
    )
    experiment: str = Field("mto", description="MLflow experiment name")
    run_name: str | None = Field(None, description="MLflow run name (default: the run folder name)")

    @field_validator("run_name")
    @classmethod
    def _one_component(cls, value: str | None) -> str | None:
        return value if value is None else one_path_component(value)  # report folders are named after it


class ExperimentConfig(_Section):
    """One runnable experiment."""

    name: str = Field(..., min_length=1, description="experiment name; run folders and MLflow run names start with it")
    # 2^31 - 1 at most: seeds are offset per runner / iteration and numpy takes them below 2^32.
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed for RLlib, environments and the curriculum")
    run_dir: str = Field("runs", description="root for run folders, checkpoints and the default MLflow store")
    task: TaskConfig = Field(default_factory=TaskConfig)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    bonus: BonusConfig = Field(default_factory=BonusConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    sac: SACConfig = Field(default_factory=SACConfig, description="RLlib SAC settings (rl.algorithm: SAC)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    supervised: SupervisedConfig = Field(default_factory=SupervisedConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    tune: TuneConfig = Field(
        default_factory=TuneConfig, description="Ray Tune searches: `mto tune-groups` (task groupings) and `mto pareto`"
    )
    groups: list[list[str]] | None = Field(
        None,
        description="train one network per group of task names (e.g. written by `mto tune-groups`; Simon Says: one PPO run per group, nested under a parent MLflow run); null = one network for all",
    )
    offline: OfflineConfig | None = Field(
        None, description="offline multi-task RL (CQL over a Parquet transition dataset, data sharing); set = `mto train` trains offline"
    )

    @field_validator("name")
    @classmethod
    def _one_component(cls, value: str) -> str:
        return one_path_component(value)  # run folders are named after it: `../x` would leave run_dir

    @property
    def is_supervised(self) -> bool:
        """True for the supervised dataset families (Ray Train), False for RL (RLlib)."""
        return self.task.family not in ("simon_says", "metaworld")

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data, with YAML key names."""
        return self.model_dump(mode="json", by_alias=True)


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The config section class behind a field's annotation (`Section` or `Section | None`), else None."""
    import types
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
    return None


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of an error location."""
    model: type[BaseModel] = ExperimentConfig
    for part in loc[:-1]:
        field = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)), None
        )
        inner = section_model(field.annotation) if field is not None else None
        if inner is None:
            return None
        model = inner
    return model


def _format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        loc = [p for p in e["loc"] if p not in ("function-after",)]
        path = ".".join(str(p) for p in loc) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            owner = _model_at(loc)
            valid = _valid_keys(owner) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            msg = f"unknown key{hint} valid keys: {', '.join(valid)}"
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def _set_path(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node: Any = data
    model: type[BaseModel] | None = ExperimentConfig
    for i, key in enumerate(keys):
        if model is not None:
            valid = _valid_keys(model)
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" did you mean '{close[0]}'?" if close else ""
                raise ConfigError(
                    f"{source}: --set {dotted}: unknown key '{'.'.join(keys[: i + 1])}';{hint} "
                    f"valid keys: {', '.join(valid)}"
                )
            field = next(f for n, f in model.model_fields.items() if key in (n, f.alias))
            model = section_model(field.annotation)
        if i == len(keys) - 1:
            node[key] = value
        else:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child


def parse_overrides(overrides: Sequence[str], source: str = "--set") -> list[tuple[str, Any]]:
    """Parse `a.b=value` strings; values are read as YAML (`3`, `true`, `[a, b]`, `null`)."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: '{item}' is not of the form key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = read_yaml(raw) if raw != "" else ""
        except DuplicateKeyError as exc:
            raise ConfigError(f"{source}: value of '{key}': {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: value of '{key}' is not valid YAML: {exc}") from exc
        parsed.append((key.strip(), value))
    return parsed


def config_from_dict(data: dict[str, Any], source: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Validate plain data (+ overrides) into an `ExperimentConfig`."""
    data = dict(data)
    for key, value in parse_overrides(overrides):
        _set_path(data, key, value, source)
    _check_numbers(data, source)
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(source, err)) from None
    _make_paths_absolute(cfg)
    _check_domain(cfg, source)
    return cfg


# Beyond a 64-bit integer no counter, size or seed means anything (numpy and torch cannot hold it).
_INT_LIMIT = 2**63 - 1


def _check_numbers(node: Any, source: str, path: str = "") -> None:
    """Refuse a non-finite float (``.inf``, ``.nan``, ``1e400``) or an integer past 64 bits anywhere
    in the document, free-form mappings (``curriculum.params``, ...) and search spaces included."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_numbers(value, source, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_numbers(value, source, f"{path}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{source}: {path or '<root>'}: {node} is not a finite number; give a finite value")
    elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > _INT_LIMIT:
        raise ConfigError(f"{source}: {path or '<root>'}: {node} is out of range (at most {_INT_LIMIT} in size)")


def _absolute(path: str) -> str:
    """A local path made absolute against the working directory; URIs (s3://, gs://, file://...) unchanged."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        return path
    return str(Path(path).expanduser().resolve())


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:`` tracking URI (None for other stores or in-memory SQLite)."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(tracking_uri).database
    return Path(database) if database and database != ":memory:" else None


def absolute_tracking_uri(tracking_uri: str) -> str:
    """``tracking_uri`` with a relative SQLite path made absolute against the working directory
    (a Ray worker's own working directory would open, and create, another store); others unchanged."""
    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_absolute():
        return sqlite_uri(path.expanduser().resolve())
    return tracking_uri


def sqlite_uri(path: Path) -> str:
    """The ``sqlite:///`` URI of database file ``path``. SQLAlchemy decodes ``%41`` and ``%20`` and cuts
    at ``?`` (its query), which put the store and its lock elsewhere than the artifacts of a run folder
    named ``pct%41dir`` or ``q?x``; those two characters are encoded, the rest (spaces, ``#``, ...)
    SQLAlchemy reads as written, and they stay readable."""
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def _make_paths_absolute(cfg: ExperimentConfig) -> None:
    """Resolve every local path of the config here, on the driver, against the directory `mto` runs in.

    Ray Train workers, Tune trials, tasks and actors run in working directories of their own, where
    a relative path names another place (or nothing); the config they receive must not depend on it.
    """
    cfg.run_dir = _absolute(cfg.run_dir)
    if cfg.task.dataset is not None:
        cfg.task.dataset = _absolute(cfg.task.dataset)
    for key, value in cfg.task.dataset_params.items():
        if key.endswith(("_path", "_dir")) and isinstance(value, str):
            cfg.task.dataset_params[key] = _absolute(value)
    if cfg.tune.storage_path is not None:
        cfg.tune.storage_path = _absolute(cfg.tune.storage_path)
    if cfg.tracking.tracking_uri is not None:
        cfg.tracking.tracking_uri = absolute_tracking_uri(cfg.tracking.tracking_uri)
    if cfg.offline is not None:
        cfg.offline.dataset = _absolute(cfg.offline.dataset)
        for source in cfg.offline.behaviour:
            if source.checkpoint is not None:
                source.checkpoint = _absolute(source.checkpoint)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file, apply `--set` overrides, validate everything.

    Raises `ConfigError` naming the file and the field path on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                          "save the file as UTF-8") from None
    try:
        data = read_yaml(text)
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (name, task, rl, ...)")
    return config_from_dict(data, str(path), overrides)


def config_for_tasks(data: dict[str, Any], tasks: Sequence[str], source: str, **fields: Any) -> ExperimentConfig:
    """A config (as plain data, `ExperimentConfig.to_dict()`) narrowed to ``tasks``, with top-level
    ``fields`` replaced, validated: one network over exactly these tasks (a group, a Tune trial)."""
    return config_from_dict({**data, **fields, "task": {**data["task"], "tasks": list(tasks)}}, source)


def _check_domain(cfg: ExperimentConfig, source: str) -> None:
    """Checks that need the task family and curricula (pure packages, no Ray)."""
    from tasks.task_space import UnknownTaskError

    if cfg.groups is not None and cfg.offline is not None:
        raise ConfigError(f"{source}: groups: offline runs train one Q-network over every task; remove groups")
    if cfg.is_supervised:
        _check_supervised(cfg, source)
        _check_groups(cfg, source, supervised_task_names(cfg))
        return

    if cfg.task.family == "metaworld" or cfg.rl.algorithm == "SAC":
        from orchestrator.rl.sac_config import sac_setting_error

        problem = sac_setting_error(cfg)
        if problem:
            raise ConfigError(f"{source}: {problem[0]}: {problem[1]}")
    if cfg.model.combiner == "pareto_mtl":
        raise ConfigError(
            f"{source}: model.combiner: pareto_mtl places a solution by the direction of the vector of (positive) "
            "task losses, and PPO's per-task losses change sign during training, so it is offered for the supervised "
            "families only; valid choices for simon_says: sum, pcgrad, mgda"
        )
    if cfg.task.action_mask and cfg.task.backend != "techtree":
        raise ConfigError(f"{source}: task.action_mask: only the techtree backend reports which actions are valid; "
                          f"got backend '{cfg.task.backend}' (valid with action_mask: techtree)")
    if cfg.bonus.count_milestones and cfg.bonus.mode != "off":
        if cfg.task.backend != "techtree":
            raise ConfigError(f"{source}: bonus.count_milestones: only the techtree backend reports count milestones; "
                              f"got backend '{cfg.task.backend}' (valid with count_milestones: techtree)")
        if cfg.bonus.scope != "every_episode":
            raise ConfigError(f"{source}: bonus.count_milestones: milestones are paid in every episode; got "
                              f"bonus.scope '{cfg.bonus.scope}' (valid with count_milestones: every_episode)")
    try:
        task_space = resolve_task_space(cfg)
    except UnknownTaskError as exc:
        raise ConfigError(f"{source}: task.tasks: {exc}") from None
    except ImportError as exc:
        raise ConfigError(f"{source}: task.backend: {exc}") from None
    if len(task_space) == 0:
        raise ConfigError(f"{source}: task.max_depth: no task has depth <= {cfg.task.max_depth}")
    _check_groups(cfg, source, task_space.names)
    if cfg.curriculum.kind == "learning_progress":
        import inspect

        from curricula import LearningProgressCurriculum, learning_progress_setting_error

        defaults = inspect.signature(LearningProgressCurriculum).parameters
        params = {k: cfg.curriculum.params.get(k, defaults[k].default) for k in ("uniform_mix", "untried_weight")}
        for key, value in params.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"{source}: curriculum.params.{key}: a number, got {value!r}")
        problem = learning_progress_setting_error(float(params["uniform_mix"]), float(params["untried_weight"]),
                                                  str(cfg.curriculum.params.get("success_source", "online")))
        if problem:
            raise ConfigError(f"{source}: curriculum.params: {problem}")
    try:
        build_scheduler(cfg, task_space.names, resolve_item_names(cfg))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: curriculum.params: {exc}") from None
    if cfg.model.architecture != "mlp":
        _check_network(cfg, source, len(task_space))


def _check_supervised(cfg: ExperimentConfig, source: str) -> None:
    import inspect

    from tasks.supervised import DATASETS, DatasetSchemaError, read_dataset

    family = cfg.task.family
    if cfg.model.architecture == "mlp":
        raise ConfigError(
            f"{source}: model.architecture: '{family}' is a supervised family and needs a multi-task architecture; "
            "valid choices: shared_bottom, separate_bottom, model_patch, soft_modular, independent"
        )
    if cfg.task.dataset is not None:
        try:
            dataset = read_dataset(cfg.task.dataset, name=family)
        except (DatasetSchemaError, OSError, ValueError) as exc:
            raise ConfigError(f"{source}: task.dataset: {exc}") from None
        num_tasks = len(dataset.task_space)
    else:
        valid = sorted(k for k in inspect.signature(DATASETS[family]).parameters if k not in {"out_path", "seed"})
        unknown = sorted(set(cfg.task.dataset_params) - set(valid))
        if unknown:
            raise ConfigError(f"{source}: task.dataset_params: unknown {unknown} for '{family}'; valid: {valid}")
        num_tasks = 2
    _check_network(cfg, source, num_tasks)


def supervised_task_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The task names of a supervised config's dataset (read from the file, or from the generator)."""
    from tasks.supervised import grouped_regression, multi_digit, pareto_toy, read_dataset

    if cfg.task.dataset is not None:
        return read_dataset(cfg.task.dataset, name=cfg.task.family).task_space.names
    if cfg.task.family == "grouped_regression":
        params = {k: cfg.task.dataset_params[k] for k in ("num_groups", "tasks_per_group") if k in cfg.task.dataset_params}
        return grouped_regression.task_space(**params).names
    return {"multi_digit": multi_digit.TASK_SPACE, "pareto_toy": pareto_toy.TASK_SPACE}[cfg.task.family].names


def _check_groups(cfg: ExperimentConfig, source: str, valid: Sequence[str]) -> None:
    """Every group names known tasks, once each, and every task is in some group."""
    if cfg.groups is None:
        return
    valid = list(valid)
    if not cfg.groups or any(not g for g in cfg.groups):
        raise ConfigError(f"{source}: groups: give non-empty lists of task names; valid tasks: {list(valid)}")
    for g, group in enumerate(cfg.groups):
        for name in group:
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=1)
                hint = f" did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"{source}: groups[{g}]: unknown task '{name}';{hint} valid tasks: {list(valid)}")
        if len(set(group)) != len(group):
            raise ConfigError(f"{source}: groups[{g}]: a task is listed twice in {group}")
    missing = [n for n in valid if not any(n in g for g in cfg.groups)]
    if missing:
        raise ConfigError(f"{source}: groups: task(s) {missing} are in no group; every task needs one")


def _check_network(cfg: ExperimentConfig, source: str, num_tasks: int) -> None:
    """Build the architecture and combiner once on tiny inputs: bad knobs fail here, named."""
    from policies import build_combiner, build_network

    params = dict(cfg.model.architecture_params)
    params.pop("trunk", None)  # the supervised trainer's own knob (mlp or conv input trunk)
    try:
        build_network(cfg.model.architecture, input_dim=4, output_dim=2, num_tasks=num_tasks,
                      hidden=tuple(cfg.model.hidden), **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: model.architecture_params: {exc}") from None
    try:
        build_combiner(cfg.model.combiner, num_tasks, **cfg.model.combiner_params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: model.combiner_params: {exc}") from None


def resolve_task_space(cfg: ExperimentConfig):
    """The `TaskSpace` the config trains on (task list and depth filter applied)."""
    if cfg.task.family == "metaworld":
        from tasks.metaworld import make_task_space as metaworld_task_space, require_metaworld

        require_metaworld()  # a missing extra is reported when the config loads, naming the extra
        return metaworld_task_space(cfg.task.task_set, cfg.task.tasks)
    from tasks.simon_says import make_task_space

    space = make_task_space(cfg.task.tasks, backend=cfg.task.backend)
    if cfg.task.max_depth is not None and space.depth is not None:
        keep = [n for n, d in zip(space.names, space.depth) if d <= cfg.task.max_depth]
        space = space.subset(keep)
    return space


def resolve_item_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The inventory vocabulary of the backend (every obtainable item; a superset of the tasks)."""
    if cfg.task.family == "metaworld":
        return ()  # Meta-World tasks have no items
    from tasks.simon_says import make_task_space

    return make_task_space(None, backend=cfg.task.backend).names


def build_scheduler(cfg: ExperimentConfig, task_names: Sequence[str], item_names: Sequence[str]):
    """The curriculum scheduler (with its exploration bonus) that the config describes."""
    from curricula import ExplorationBonus, build_curriculum

    bonus = ExplorationBonus(
        mode=cfg.bonus.mode, size=cfg.bonus.size, threshold=cfg.bonus.threshold,
        items=cfg.bonus.items, non_task_items=cfg.bonus.non_task_items,
    )
    params = dict(cfg.curriculum.params)
    if cfg.curriculum.kind == "learning_progress" and "prerequisites" not in params:
        params["prerequisites"] = task_prerequisites(cfg, task_names)
    return build_curriculum(cfg.curriculum.kind, list(task_names), list(item_names), bonus=bonus, **params)


def task_prerequisites(cfg: ExperimentConfig, task_names: Sequence[str]) -> list[list[int]] | None:
    """Per task, the ids of the tasks its goal needs (Simon Says recipe chains), else None."""
    if cfg.task.family != "simon_says":
        return None
    from tasks.simon_says import goal_prerequisite_items

    needs = goal_prerequisite_items(task_names, task_names, cfg.task.backend)
    return [[int(j) for j in row.nonzero()[0]] for row in needs]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (for MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
