"""Lean EnvRunner connector pipelines for Box (or Dict of Box) observations and a Discrete
(PPO) or bounded Box (SAC) action space.

RLlib's default env-to-module pipeline gathers each env's latest observation from its
episode, one item at a time, through five pieces (plus a per-piece timer); the default
module-to-env pipeline samples through RLlib's distribution wrappers, unbatches every
column into per-env items, normalises/clips (a no-op for Discrete) and listifies.
For a numpy vector env with a flat observation and a stateless MLP all of that reduces
to one `np.stack` + `torch.from_numpy` going in and one categorical draw coming out.

Used via ``config.env_runners(env_to_module_connector=..., module_to_env_connector=...,
add_default_connectors_to_env_to_module_pipeline=False,
add_default_connectors_to_module_to_env_pipeline=False)`` (see `orchestrator.rl.algorithm.build_ppo_config`).
The learner's connector pipeline (GAE etc.) is untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner


class StackObservations(ConnectorV2):
    """env -> module: the vector env's current observations as one float tensor.

    The EnvRunner passes the step's (unbatched) observations as ``kwargs["obs"]``; they
    are exactly each ongoing episode's latest observation, which is what RLlib's
    default `AddObservationsFromEpisodesToBatch` + `BatchIndividualItems` +
    `NumpyToTensor` would produce, minus the per-episode Python loop.
    """

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, **kwargs) -> Any:
        obs = kwargs.get(Columns.OBS)
        if obs is None:  # called without the env's data: fall back to the episodes
            obs = [ep.get_observations(-1) for ep in episodes]
        if isinstance(obs, dict):  # already batched by the vectorized sampler (orchestrator.rl.vector_sampling)
            batch[Columns.OBS] = {k: _tensor(v) for k, v in obs.items()}
        elif isinstance(obs, np.ndarray):
            batch[Columns.OBS] = _tensor(obs)
        elif isinstance(obs[0], dict):  # Dict observations (e.g. {"obs": ..., "action_mask": ...})
            batch[Columns.OBS] = {k: _tensor(np.stack([o[k] for o in obs])) for k in obs[0]}
        else:
            batch[Columns.OBS] = _tensor(np.stack(obs))
        return batch


def _tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array))


class SampleCategoricalActions(ConnectorV2):
    """module -> env: sample a Discrete action per env from the logits, as numpy arrays.

    Produces ACTIONS, ACTION_LOGP and (keeps) ACTION_DIST_INPUTS, the columns PPO's
    learner reads from the episodes; greedy (argmax) when not exploring. Actions are
    drawn with torch's global RNG, like RLlib's own `GetActions`.
    """

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, **kwargs) -> Any:
        logits = batch[Columns.ACTION_DIST_INPUTS]
        with torch.no_grad():
            logp_all = torch.log_softmax(logits, dim=-1)
            if explore:
                # Inverse-CDF draw: ~7x cheaper than torch.multinomial (what RLlib's
                # TorchCategorical.sample uses) on a 64 x 213 CPU batch.
                cdf = logp_all.exp().cumsum(dim=-1)
                u = torch.rand(cdf.shape[0], 1) * cdf[:, -1:]
                actions = torch.searchsorted(cdf, u, right=True).clamp_max_(cdf.shape[-1] - 1).squeeze(-1)
            else:
                actions = logits.argmax(dim=-1)
            logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        out = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        out[Columns.ACTIONS] = actions.numpy()
        out[Columns.ACTION_LOGP] = logp.numpy()
        return out


class SampleSquashedGaussianActions(ConnectorV2):
    """module -> env: a bounded-Box action per env from SAC's squashed Gaussian, as numpy arrays.

    ACTIONS are RLlib's `TorchSquashedGaussian` draw in [-1, 1] (the tanh of the mean when not
    exploring, as the squashed Gaussian's mode is taken in evaluation), what RLlib's `GetActions` stores and SAC replays; ACTIONS_FOR_ENV rescales them
    to the env's bounds and clips, as RLlib's `NormalizeAndClipActions` does with
    ``normalize_actions`` (its default). No other column: SAC's learner reads none.
    """

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, **kwargs) -> Any:
        from ray.rllib.core.distribution.torch.torch_distribution import TorchSquashedGaussian

        inputs = batch[Columns.ACTION_DIST_INPUTS]
        with torch.no_grad():
            # Greedy: tanh(mean). (RLlib 2.60's TorchSquashedGaussian.to_deterministic() returns the
            # unsquashed mean, and its default pipeline then fails on it.)
            actions = (TorchSquashedGaussian.from_logits(inputs).sample() if explore
                       else torch.tanh(inputs.chunk(2, dim=-1)[0])).numpy()
        for_env = np.clip(self.low + (actions + 1.0) * (self.high - self.low) / 2.0, self.low, self.high)
        return {Columns.ACTIONS: actions, Columns.ACTIONS_FOR_ENV: for_env.astype(actions.dtype, copy=False)}


def lean_env_to_module(env=None, spaces=None, device=None):
    return StackObservations()


def lean_module_to_env(env=None, spaces=None):
    return SampleCategoricalActions()


def lean_sac_module_to_env(env=None, spaces=None):
    space = env.single_action_space if env is not None else spaces["__env_single__"][1]
    return SampleSquashedGaussianActions(space.low, space.high)


class LeanSingleAgentEnvRunner(SingleAgentEnvRunner):
    """`SingleAgentEnvRunner` that samples by timesteps in whole-batch array operations
    (`orchestrator.rl.vector_sampling`) when no episode callback is configured, and otherwise
    skips the per-env, per-step ``on_episode_step`` dispatch when no callback overrides it
    (RLlib builds a kwargs dict, walks the env's wrapper chain for ``env.unwrapped`` and loops
    over the callback objects for every env on every step, even when every callback is
    RLlib's no-op default)."""

    _skip_step_callbacks: bool | None = None

    def _make_on_episode_callback(self, which, idx, episodes):
        if which == "on_episode_step":
            if self._skip_step_callbacks is None:
                self._skip_step_callbacks = not self.config.callbacks_on_episode_step and all(
                    getattr(type(cb), "on_episode_step", None) is RLlibCallback.on_episode_step
                    for cb in (self._callbacks or [])
                )
            if self._skip_step_callbacks:
                return
        super()._make_on_episode_callback(which, idx, episodes)

    def _sample(self, *, num_timesteps=None, num_episodes=None, explore: bool, random_actions: bool = False,
                force_reset: bool = False):
        from orchestrator.rl.vector_sampling import can_sample_vectorized, sample_vectorized

        if num_episodes is None and can_sample_vectorized(self, num_timesteps, random_actions):
            return sample_vectorized(self, num_timesteps, explore, force_reset)
        return super()._sample(num_timesteps=num_timesteps, num_episodes=num_episodes, explore=explore,
                               random_actions=random_actions, force_reset=force_reset)
