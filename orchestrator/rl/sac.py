"""Multi-task SAC on RLlib's new API stack (RLlib's own SAC: its Algorithm, RLModule, Learner, loss).

- `MultiTaskSACModule` subclasses RLlib's `DefaultSACTorchRLModule` and puts a `policies`
  architecture (shared trunk, separate bottom, model patches, soft modularization, CARE, ...)
  or MT-SAC's plain MLP behind each of its parts: the actor and the twin Q networks (their
  targets are RLlib's copies). The task is read from the observation's one-hot suffix
  (Meta-World's layout); the `policies` networks see the 39 state numbers (plus the action for
  Q) and the task id, the MLP the whole observation.
- `MultiTaskSACLearner` subclasses RLlib's `SACTorchLearner`: RLlib's SAC loss on the replayed
  batch in one pass, each row with its task's learnable entropy temperature (as the MT-SAC
  baselines), each task's loss the mean of its rows; for the `policies` architectures the
  configured combiner (`sum`, `pcgrad`, `mgda`) turns the per-task actor and critic gradients
  into one update through `apply_multitask_backward`, all-reduced across learners before
  combining (the path the PPO learner takes).
- `build_sac_config` assembles RLlib's `SACConfig` from our config; `make_metaworld_env` is the
  env creator every EnvRunner runs (the Meta-World vector env + the curriculum wrapper).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from ray.rllib.algorithms.sac.sac_learner import QF_LOSS_KEY, QF_PREDS, QF_TWIN_LOSS_KEY, QF_TWIN_PREDS
from ray.rllib.algorithms.sac.torch.default_sac_torch_rl_module import DefaultSACTorchRLModule
from ray.rllib.algorithms.sac.torch.sac_torch_learner import SACTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchSquashedGaussian
from ray.rllib.core import COMPONENT_OPTIMIZER
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.utils.metrics import ALL_MODULES
from torch import nn

from orchestrator.config import ExperimentConfig
from policies import apply_multitask_backward, build_combiner, build_network, mlp, summed_backward
from policies.backward import torch_distributed_allreduce

ENV_NAME = "mto-metaworld"
DROPPED_NONFINITE = "combiner/dropped_nonfinite"
ALPHA_LOSS_KEY = "alpha_loss"
TEMPERATURES = "log_alpha"  # learner state key: RLlib does not checkpoint SAC's temperature itself
# The usual SAC bounds on the actor's log standard deviation (Haarnoja et al. 2018's code).
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def task_ids(obs: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """Task index of each row: the argmax of the observation's one-hot suffix."""
    return obs[:, -num_tasks:].argmax(dim=-1)


class TaskConditionedEncoder(nn.Module):
    """A whole `policies` network in the place of an RLlib SAC encoder: ``{obs[, actions]} -> {ENCODER_OUT}``.

    ``with_action``: the Q networks read ``[state, action]``; ``actor``: the output is the squashed
    Gaussian's ``[mean, log_std]`` with ``log_std`` clamped to the usual SAC bounds.
    """

    def __init__(self, network: nn.Module, num_tasks: int, with_action: bool, actor: bool,
                 one_hot_input: bool = False) -> None:
        super().__init__()
        self.network = network
        self.num_tasks = int(num_tasks)
        self.with_action = with_action
        self.actor = actor
        self.one_hot_input = one_hot_input  # a plain MLP that reads the task one-hot as input (MT-SAC)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        obs = batch[Columns.OBS].float()
        x = obs if self.one_hot_input else obs[:, : -self.num_tasks]
        if self.with_action:
            x = torch.cat([x, batch[Columns.ACTIONS].float()], dim=-1)
        out = self.network(x) if self.one_hot_input else self.network(x, task_ids(obs, self.num_tasks))
        if self.actor:
            mean, log_std = out.chunk(2, dim=-1)
            out = torch.cat([mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)], dim=-1)
        return {ENCODER_OUT: out}


class MultiTaskSACModule(DefaultSACTorchRLModule):
    """RLlib's SAC RLModule with `policies` architectures (or MT-SAC's MLP) as actor and (twin) Q networks.

    ``model_config``: ``architecture``, ``hidden``, ``num_tasks``, ``architecture_params``,
    ``activation`` (``twin_q`` is added by RLlib's SACConfig). RLlib's forward passes, target
    networks and squashed Gaussian are used unchanged; only the networks are ours.

    ``architecture: mlp`` is MT-SAC as the MT10 papers run it: one MLP on ``[state, one-hot]``
    for the actor and on ``[state, one-hot, action]`` for each Q network. (RLlib 2.60's default
    continuous-action Q network is a multi-stream encoder, an observation MLP and an action MLP
    joined by fusion layers: 5.7x the parameters at 2 x 256, and the arithmetic with them.)
    """

    def setup(self) -> None:
        cfg = self.model_config
        self.twin_q = bool(cfg.get("twin_q", True))
        self.num_tasks = int(cfg["num_tasks"])
        state_dim = int(np.prod(self.observation_space.shape)) - self.num_tasks
        action_dim = int(np.prod(self.action_space.shape))

        one_hot = cfg["architecture"] == "mlp"
        input_dim = state_dim + (self.num_tasks if one_hot else 0)

        def encoder(with_action: bool, actor: bool) -> TaskConditionedEncoder:
            in_dim, out_dim = input_dim + (action_dim if with_action else 0), (2 * action_dim if actor else 1)
            if one_hot:
                network = mlp(in_dim, out_dim, cfg["hidden"], cfg.get("activation", "relu"))
            else:
                network = build_network(cfg["architecture"], input_dim=in_dim, output_dim=out_dim,
                                        num_tasks=self.num_tasks, hidden=tuple(cfg["hidden"]),
                                        **dict(cfg.get("architecture_params") or {}))
            return TaskConditionedEncoder(network, self.num_tasks, with_action, actor, one_hot_input=one_hot)

        self.pi_encoder = encoder(with_action=False, actor=True)
        self.pi = nn.Identity()
        if not self.inference_only:
            self.qf_encoder = encoder(with_action=True, actor=False)
            self.qf = nn.Identity()
            if self.twin_q:
                self.qf_twin_encoder = encoder(with_action=True, actor=False)
                self.qf_twin = nn.Identity()

    # No catalog builds our networks, so name SAC's action distribution here.
    def get_inference_action_dist_cls(self):
        return TorchSquashedGaussian

    def get_exploration_action_dist_cls(self):
        return TorchSquashedGaussian

    def get_train_action_dist_cls(self):
        return TorchSquashedGaussian

    def no_sync(self):
        """`MultiTaskSACLearner` all-reduces per-task gradients itself and does not wrap this module in DDP."""
        return contextlib.nullcontext()


def sac_loss_rows(batch: dict[str, Any], fwd_out: dict[str, Any], alpha: torch.Tensor, gamma: float,
                  twin_q: bool) -> dict[str, torch.Tensor]:
    """Each row's term of RLlib's continuous SAC critic and actor losses.

    RLlib's `SACTorchLearner` takes the batch mean of exactly these terms; keeping the rows lets one
    pass give every task's loss (its rows' mean) with ``alpha`` holding each row's task temperature
    (detached, as RLlib's). Soft target ``r + gamma^n (1 - done) (min Q'(s', a') - alpha log pi(a'|s'))``,
    Huber critic loss weighted by the replay weights, actor term ``alpha log pi(a~|s) - Q(s, a~)``.
    """
    soft_next = fwd_out["q_target_next"] - alpha * fwd_out["logp_next_resampled"]
    masked = (1.0 - batch[Columns.TERMINATEDS].float()) * soft_next
    target = (batch[Columns.REWARDS] + (gamma ** batch["n_step"]) * masked).detach()
    rows = {QF_LOSS_KEY: batch["weights"] * nn.functional.huber_loss(fwd_out[QF_PREDS], target, reduction="none",
                                                                       delta=1.0),
            POLICY_LOSS_KEY: alpha * fwd_out["logp_resampled"] - fwd_out["q_curr"]}
    if twin_q:
        rows[QF_TWIN_LOSS_KEY] = batch["weights"] * nn.functional.huber_loss(
            fwd_out[QF_TWIN_PREDS], target, reduction="none", delta=1.0)
    return rows


def per_task_mean(values: torch.Tensor, task: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over each task's rows (0 for a task with none): one scatter-add, differentiable."""
    sums = torch.zeros(counts.shape[0], dtype=values.dtype, device=values.device).index_add(0, task, values)
    return sums / counts.clamp(min=1).to(values.dtype)


class MultiTaskSACLearner(SACTorchLearner):
    """RLlib's SAC learner with per-task losses, per-task entropy temperatures and a gradient combiner.

    ``learner_config_dict``: ``num_tasks``, ``task_names``, ``per_task_alpha`` (default True),
    ``multitask_network`` (the module is a `MultiTaskSACModule`), ``combiner`` and
    ``combiner_params`` (used with a multi-task network).

    The loss of task t is RLlib's SAC loss on the rows of task t with temperature ``alpha[t]``;
    all tasks come from one pass over the batch (`sac_loss_rows`, then `per_task_mean`), equal to
    calling RLlib's loss task by task. Without a multi-task network the critic and actor losses
    are the batch means (the per-task losses weighted by n_t / N; RLlib's backward does the
    rest); each temperature gets its own task's gradient. With one, each optimizer's network gets
    ``apply_multitask_backward`` over its T per-task losses (twin Q: each Q network with its own).
    """

    def build(self) -> None:
        cfg = self.config.learner_config_dict
        self._num_tasks = int(cfg["num_tasks"])
        self._task_names = list(cfg.get("task_names") or [f"task_{t}" for t in range(self._num_tasks)])
        self._per_task_alpha = bool(cfg.get("per_task_alpha", True))
        self._multitask = bool(cfg.get("multitask_network", False))
        self._combiner = (build_combiner(cfg.get("combiner", "sum"), self._num_tasks,
                                         **dict(cfg.get("combiner_params") or {})) if self._multitask else None)
        self._task_losses: dict[str, dict[str, list[torch.Tensor | None]]] = {}
        self._task_counts: dict[str, torch.Tensor] = {}
        super().build()

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        # One temperature per task: RLlib's single log-alpha is replaced before its optimizer is registered.
        config = config or self.config.get_config_for_module(module_id)
        size = self._num_tasks if self._per_task_alpha else 1
        self.curr_log_alpha[module_id] = self._get_tensor_variable(
            np.full(size, np.log(config.initial_alpha), dtype=np.float32), dtype=torch.float32, trainable=True)
        super().configure_optimizers_for_module(module_id, config)

    def _make_modules_ddp_if_necessary(self) -> None:
        # The combiners need the per-task gradients averaged across learners BEFORE combining, so a
        # multi-task network is not wrapped in DDP; rank 0's initial weights are broadcast instead.
        if not self._multitask:
            return super()._make_modules_ddp_if_necessary()
        if not self.distributed:
            return None
        import torch.distributed as dist

        with torch.no_grad():
            for module_id in self.module.keys():
                for tensor in [*self.module[module_id].parameters(), *self.module[module_id].buffers()]:
                    dist.broadcast(tensor.data, src=0)
        return None

    def get_state(self, components=None, *, not_components=None, **kwargs):
        state = super().get_state(components, not_components=not_components, **kwargs)
        # The temperatures travel with the optimizer state, so `--resume` continues each task's alpha
        # (RLlib's SAC restores Adam's moments but restarts log-alpha at initial_alpha).
        if self._check_component(COMPONENT_OPTIMIZER, components, not_components):
            state[TEMPERATURES] = {mid: value.detach().cpu().numpy() for mid, value in self.curr_log_alpha.items()}
        return state

    def set_state(self, state) -> None:
        super().set_state(state)
        with torch.no_grad():
            for module_id, values in (state.get(TEMPERATURES) or {}).items():
                self.curr_log_alpha[module_id].copy_(torch.as_tensor(values))

    def alphas(self, module_id: str = "default_policy") -> dict[str, float]:
        """The current entropy temperature of each task."""
        values = torch.exp(self.curr_log_alpha[module_id].detach()).cpu().numpy()
        if values.size == 1:
            values = np.repeat(values, self._num_tasks)
        return dict(zip(self._task_names, values.tolist()))

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        task = task_ids(batch[Columns.OBS], self._num_tasks)
        counts = torch.bincount(task, minlength=self._num_tasks)
        log_alpha = self.curr_log_alpha[module_id]
        row_log_alpha = log_alpha[task] if self._per_task_alpha else log_alpha.expand(task.shape[0])
        rows = sac_loss_rows(batch, fwd_out, torch.exp(row_log_alpha.detach()), config.gamma, config.twin_q)
        totals = {key: values.mean() for key, values in rows.items()}  # = sum_t (n_t / N) * task t's mean
        # Each temperature is its own task's: its gradient is that task's mean, not weighted by n_t / N.
        entropy_gap = fwd_out["logp_resampled"].detach() + self.target_entropy[module_id]
        if self._per_task_alpha:
            present = counts > 0
            totals[ALPHA_LOSS_KEY] = -(log_alpha * per_task_mean(entropy_gap, task, counts))[present].sum()
        else:
            totals[ALPHA_LOSS_KEY] = -(log_alpha * entropy_gap).mean()
        if self._multitask:
            # The combiner needs each task's loss; they share the one forward pass and its graph.
            means = {key: per_task_mean(values, task, counts) for key, values in rows.items()}
            nonempty = counts.tolist()
            self._task_losses[module_id] = {key: [m[t] if nonempty[t] else None for t in range(self._num_tasks)]
                                            for key, m in means.items()}
            self._task_counts[module_id] = counts
            self._temp_losses[(module_id, ALPHA_LOSS_KEY)] = totals[ALPHA_LOSS_KEY]
        else:
            for key, value in totals.items():
                self._temp_losses[(module_id, key)] = value
        alpha = torch.exp(log_alpha.detach())
        stats = {**totals, "alpha_value": alpha.mean(), "qf_mean": torch.mean(fwd_out[QF_PREDS]),
                 "logps": torch.mean(fwd_out["logp_resampled"])}
        if self._per_task_alpha:
            stats.update({f"alpha/{name}": alpha[t] for t, name in enumerate(self._task_names)})
        self.metrics.log_dict({k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in stats.items()},
                              key=module_id, window=1)
        return sum(totals.values())

    def compute_gradients(self, loss_per_module, **kwargs):
        if not self._multitask:
            return super().compute_gradients(loss_per_module, **kwargs)
        allreduce = torch_distributed_allreduce if self.distributed else None
        grads = {}
        for module_id in set(loss_per_module) - {ALL_MODULES}:
            module = self.module[module_id].unwrapped()
            losses, counts = self._task_losses.pop(module_id), self._task_counts.pop(module_id)
            networks = {"qf": getattr(module, "qf_encoder", None), "qf_twin": getattr(module, "qf_twin_encoder", None),
                        "policy": module.pi_encoder}
            for optim_name, optim in self.get_optimizers_for_module(module_id):
                optim.zero_grad(set_to_none=True)
                if optim_name == "alpha":
                    self._temp_losses.pop((module_id, ALPHA_LOSS_KEY)).backward(retain_graph=True)
                    if allreduce is not None:
                        for param in optim.param_groups[0]["params"]:
                            if param.grad is not None:
                                allreduce(param.grad)
                else:
                    network, task_losses = networks[optim_name].network, losses[optim_name + "_loss"]
                    # `sum` needs no per-task gradients: one backward pass (T with the general path).
                    if not (self._combiner.name == "sum" and allreduce is None
                            and summed_backward(network, task_losses)):
                        self._combined_backward(module_id, optim_name, network, task_losses, counts, allreduce)
                grads.update({pid: p.grad for pid, p in self.filter_param_dict_for_optimizer(self._params, optim).items()})
        self._temp_losses.clear()
        return grads

    def _combined_backward(self, module_id, optim_name, network, task_losses, counts, allreduce) -> None:
        stats = apply_multitask_backward(network, task_losses, self._combiner, allreduce=allreduce,
                                         task_sample_counts=counts)
        for t in stats.dropped_nonfinite_tasks:
            self.metrics.log_value(
                (module_id, f"{DROPPED_NONFINITE}/{optim_name}/{self._task_names[t]}"), 1, reduce="lifetime_sum")


def make_metaworld_env(env_config: dict[str, Any]):
    """RLlib env creator: the Meta-World vector env (RLlib passes ``num_envs``), with the curriculum
    wrapper when ``env_config["curriculum_actor"]`` names a `CurriculumActor`."""
    import gymnasium as gym

    from tasks.metaworld import ENV_ID  # importing the package registers the gymnasium id

    env = gym.make_vec(ENV_ID, num_envs=int(env_config.get("num_envs") or 1), vectorization_mode="vector_entry_point",
                       task_set=env_config.get("task_set", "MT10"), tasks=list(env_config["tasks"]),
                       horizon=int(env_config["horizon"]), benchmark_seed=int(env_config.get("benchmark_seed", 0)))
    actor_name = env_config.get("curriculum_actor")
    if actor_name is None:
        return env
    import ray

    from orchestrator.rl.curriculum_actor import ActorCurriculumClient
    from orchestrator.rl.curriculum_wrapper import CurriculumVectorWrapper

    client = ActorCurriculumClient(ray.get_actor(actor_name, namespace=env_config.get("namespace")))
    return CurriculumVectorWrapper(
        env, client, bonus_size=0.0,
        refresh_every_episodes=int(env_config["refresh_every_episodes"]),
        refresh_every_seconds=float(env_config["refresh_every_seconds"]),
        report_every_episodes=int(env_config["report_every_episodes"]),
        wait_for_curriculum=bool(env_config.get("reproducible", False)),
    )


def sac_rl_module_spec(cfg: ExperimentConfig, num_tasks: int, architecture_params: dict[str, Any]):
    """`MultiTaskSACModule`'s spec for a `policies` architecture."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    return RLModuleSpec(module_class=MultiTaskSACModule, model_config={
        "architecture": cfg.model.architecture, "hidden": list(cfg.model.hidden), "num_tasks": num_tasks,
        "architecture_params": dict(architecture_params), "twin_q": True, "activation": cfg.model.activation,
    })


def build_sac_config(cfg: ExperimentConfig, env_config: dict[str, Any], architecture_params: dict[str, Any] | None = None):
    """RLlib's `SACConfig` (new API stack) from our config: uniform replay, per-task temperatures,
    `MultiTaskSACModule` (MT-SAC's MLP for ``model.architecture: mlp``, else a `policies` architecture)."""
    from ray.rllib.algorithms.sac import SACConfig
    from ray.tune.registry import register_env

    from orchestrator.rl.sac_training import MultiTaskSAC

    register_env(ENV_NAME, make_metaworld_env)
    rl, sac = cfg.rl, cfg.sac
    num_tasks = len(env_config["tasks"])
    multitask = cfg.model.architecture != "mlp"
    config = (
        SACConfig(algo_class=MultiTaskSAC)
        .environment(env=ENV_NAME, env_config=env_config)
        .env_runners(
            num_env_runners=rl.num_env_runners,
            num_envs_per_env_runner=rl.num_envs_per_env_runner,
            num_cpus_per_env_runner=rl.num_cpus_per_env_runner,
            rollout_fragment_length=rl.rollout_fragment_length,
            gym_env_vectorize_mode="vector_entry_point",
        )
        .training(
            gamma=rl.gamma,
            actor_lr=sac.actor_lr,
            critic_lr=sac.critic_lr,
            alpha_lr=sac.alpha_lr,
            initial_alpha=sac.initial_alpha,
            target_entropy=sac.target_entropy,
            tau=sac.tau,
            twin_q=True,
            train_batch_size_per_learner=sac.train_batch_size,
            num_steps_sampled_before_learning_starts=sac.learning_starts,
            training_intensity=sac.training_intensity,
            # Uniform replay, as the MT-SAC baselines (MultiTaskSAC stores it as flat transitions).
            replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": sac.replay_capacity},
        )
        .learners(
            num_learners=rl.num_learners,
            num_gpus_per_learner=rl.num_gpus_per_learner,
            learner_class=MultiTaskSACLearner,
            learner_config_dict={
                "num_tasks": num_tasks,
                "task_names": list(env_config["tasks"]),
                "per_task_alpha": sac.per_task_alpha,
                "multitask_network": multitask,
                "combiner": cfg.model.combiner,
                "combiner_params": dict(cfg.model.combiner_params),
                "overlap_sampling": rl.overlap_sampling,
            },
        )
        .reporting(min_sample_timesteps_per_iteration=sac.env_steps_per_iteration, min_time_s_per_iteration=0,
                   metrics_num_episodes_for_smoothing=100)
        .debugging(seed=cfg.seed, log_level="ERROR", log_sys_usage=False)
    )
    if rl.overlap_sampling:
        # Two weight syncs may be in flight: the one queued behind a runner's sample request and the next.
        config = config.env_runners(max_requests_in_flight_per_env_runner=2)
    if rl.lean_connectors:
        from orchestrator.rl.connectors import LeanSingleAgentEnvRunner, lean_env_to_module, lean_sac_module_to_env

        config = config.env_runners(
            env_runner_cls=LeanSingleAgentEnvRunner, env_to_module_connector=lean_env_to_module,
            module_to_env_connector=lean_sac_module_to_env, add_default_connectors_to_env_to_module_pipeline=False,
            add_default_connectors_to_module_to_env_pipeline=False)
    params = dict(cfg.model.architecture_params) if architecture_params is None else architecture_params
    return config.rl_module(rl_module_spec=sac_rl_module_spec(cfg, num_tasks, params))


def metaworld_evaluation_episodes(module, cfg: ExperimentConfig, episodes: int, greedy: bool, seed: int):
    """`episodes` fresh episodes of every task with an SAC `module`, stepped as one Meta-World vector env.

    ``greedy``: the squashed mean action; else a sample of the squashed Gaussian. Returns
    `EpisodeOutcomes` (evaluation=True): success = Meta-World's flag at any step of the episode.
    """
    from curricula import EpisodeOutcomes
    from tasks.metaworld.envs import MetaWorldVectorEnv

    names = list(_task_names(cfg))
    n = len(names) * episodes
    env = MetaWorldVectorEnv(num_envs=n, task_set=cfg.task.task_set, tasks=names, horizon=cfg.task.horizon,
                             benchmark_seed=cfg.seed)
    goals = np.repeat(np.arange(len(names)), episodes)
    obs, _ = env.reset(seed=seed, options={"task": goals})
    done = np.zeros(n, dtype=bool)
    success = np.zeros(n, dtype=bool)
    returns = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    torch.manual_seed(seed)
    with torch.no_grad():
        while not done.all():
            inputs = module.forward_inference({Columns.OBS: torch.as_tensor(obs)})[Columns.ACTION_DIST_INPUTS]
            if greedy:
                actions = torch.tanh(inputs.chunk(2, dim=-1)[0])
            else:
                actions = TorchSquashedGaussian.from_logits(inputs).sample()
            obs, reward, terminated, truncated, info = env.step(actions.numpy())
            live = ~done  # only each slot's first episode counts
            success |= live & info["success"]
            returns += np.where(live, reward, 0.0)
            lengths += live
            done |= terminated | truncated
    env.close()
    return EpisodeOutcomes(task=goals.astype(np.int64), success=success, episode_return=returns, length=lengths,
                           items_obtained=None, evaluation=True)


def _task_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    from tasks.metaworld import make_task_space

    return make_task_space(cfg.task.task_set, cfg.task.tasks).names


__all__ = ["MultiTaskSACLearner", "MultiTaskSACModule", "build_sac_config", "make_metaworld_env",
           "metaworld_evaluation_episodes", "task_ids"]
