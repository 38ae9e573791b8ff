"""Sampling a numpy vector env in whole-batch array operations, for `LeanSingleAgentEnvRunner`.

RLlib's `SingleAgentEnvRunner._sample` turns every vector step into per-env Python work:
it unbatches the (Dict) observation with tree ops, converts the info dict into one dict
per env (gymnasium's `DictInfoToList`), appends one step to each env's
`SingleAgentEpisode` and dispatches the episode callbacks. With 256 envs that is 256
Python calls per env step, and it cost more than the env and the network together
(README, Performance).

Here a sample keeps the step results in arrays (one row per vector step) and builds the
`SingleAgentEpisode` chunks once at the end, one per (env, episode) piece, from array
slices. What comes out is what RLlib's loop would return for the same steps: the same
episode ids across sample calls, the same terminated/truncated flags, the same
``action_logp`` / ``action_dist_inputs`` / ``weights_seq_no`` columns, and the same
episode metrics; infos are not kept (no learner or connector of ours reads them; the
curriculum wrapper consumes them inside the env).

Used only when the sample is by timesteps and no episode callback is configured;
otherwise RLlib's own loop runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.wrappers.vector import DictInfoToList
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.env.env_runner import ENV_STEP_FAILURE
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.metrics import (
    ENV_TO_MODULE_CONNECTOR,
    MODULE_TO_ENV_CONNECTOR,
    RLMODULE_INFERENCE_TIMER,
    WEIGHTS_SEQ_NO,
)

_EPISODE_CALLBACKS = ("on_episode_created", "on_episode_start", "on_episode_step", "on_episode_end")


def can_sample_vectorized(runner, num_timesteps: int | None, random_actions: bool) -> bool:
    """Whether `sample_vectorized` reproduces RLlib's loop for this call (else RLlib's loop runs)."""
    if num_timesteps is None or random_actions or runner.module is None:
        return False
    config = runner.config
    if any(getattr(config, f"callbacks_{which}", None) for which in _EPISODE_CALLBACKS):
        return False
    for callback in runner._callbacks or []:  # a user callback class that overrides an episode hook
        if any(getattr(type(callback), which, None) is not getattr(RLlibCallback, which) for which in _EPISODE_CALLBACKS):
            return False
    return True


class _StepColumns:
    """Per-step arrays of one sample call, laid out env-major so an env's slice is contiguous."""

    def __init__(self, num_envs: int, capacity: int) -> None:
        self.n, self.capacity, self.t = num_envs, capacity, 0
        self.obs: Any = None  # (n, capacity + 1, ...) per observation leaf
        self.model_out: dict[str, np.ndarray] = {}
        self.actions = self.rewards = None
        self.terminated = np.zeros((num_envs, capacity), bool)
        self.truncated = np.zeros((num_envs, capacity), bool)
        self.resetting = np.zeros((num_envs, capacity), bool)  # this step only reset the env

    def _alloc(self, like: np.ndarray) -> np.ndarray:
        return np.empty((self.n, self.capacity + 1, *like.shape[1:]), like.dtype)

    def put_obs(self, t: int, obs: Any) -> None:
        if self.obs is None:
            self.obs = {k: self._alloc(v) for k, v in obs.items()} if isinstance(obs, dict) else self._alloc(obs)
        if isinstance(obs, dict):
            for k, v in obs.items():
                self.obs[k][:, t] = v
        else:
            self.obs[:, t] = obs

    def put_step(self, t: int, actions: np.ndarray, model_out: dict[str, np.ndarray], rewards, terminated,
                 truncated, resetting: np.ndarray) -> None:
        if self.actions is None:
            self.actions = np.empty((self.n, self.capacity, *actions.shape[1:]), actions.dtype)
            self.rewards = np.empty((self.n, self.capacity), np.float32)
        self.actions[:, t] = actions
        for k, v in model_out.items():
            if k not in self.model_out:
                self.model_out[k] = np.empty((self.n, self.capacity, *v.shape[1:]), v.dtype)
            self.model_out[k][:, t] = v
        self.rewards[:, t] = rewards
        self.terminated[:, t] = terminated
        self.truncated[:, t] = truncated
        self.resetting[:, t] = resetting

    def obs_at(self, i: int, t: int) -> Any:
        if isinstance(self.obs, dict):
            return {k: v[i, t] for k, v in self.obs.items()}
        return self.obs[i, t]

    def obs_slice(self, i: int, start: int, stop: int) -> Any:
        if isinstance(self.obs, dict):
            return {k: v[i, start:stop] for k, v in self.obs.items()}
        return self.obs[i, start:stop]


def sample_vectorized(runner, num_timesteps: int, explore: bool, force_reset: bool) -> list[SingleAgentEpisode]:
    """Step ``runner.env`` until at least ``num_timesteps`` env steps; episode chunks, as RLlib's loop returns."""
    if force_reset or runner._needs_initial_reset:
        runner._reset_envs_and_episodes(explore)
    n = runner.num_envs
    # Every env does a real step in all but its reset steps (an env resets after at most every
    # second step), so 2x the needed vector steps always suffices.
    capacity = 2 * (-(-num_timesteps // n)) + 1
    while True:
        cols = _StepColumns(n, capacity)
        episodes = runner._ongoing_episodes
        pending_reset = np.array([not ep.is_reset for ep in episodes])
        start_obs = [ep.get_observations(-1) if ep.is_reset else None for ep in episodes]
        first = next(o for o in start_obs if o is not None) if not pending_reset.all() else None
        if first is not None:
            cols.put_obs(0, _stack([o if o is not None else first for o in start_obs]))
        ts, t = 0, 0
        to_module = runner._cached_to_module
        runner._cached_to_module = None
        failed = False
        while ts < num_timesteps:
            with runner.metrics.log_time(RLMODULE_INFERENCE_TIMER):
                out = (runner.module.forward_exploration(to_module, t=runner.num_env_steps_sampled_lifetime + ts)
                       if explore else runner.module.forward_inference(to_module))
            to_env = runner._module_to_env(rl_module=runner.module, batch=out, episodes=episodes, explore=explore,
                                           shared_data=runner._shared_data, metrics=runner.metrics,
                                           metrics_prefix_key=(MODULE_TO_ENV_CONNECTOR,))
            actions = to_env.pop(Columns.ACTIONS)
            actions_for_env = to_env.pop(Columns.ACTIONS_FOR_ENV, actions)
            results = _step_without_info_lists(runner, actions_for_env)
            if results == ENV_STEP_FAILURE:  # RLlib recreated the env: start over, as its own loop does
                runner._reset_envs_and_episodes(explore)
                failed = True
                break
            obs, rewards, terminated, truncated, _ = results
            cols.put_step(t, np.asarray(actions), to_env, rewards, terminated, truncated, pending_reset)
            cols.put_obs(t + 1, obs)
            ts += int(n - pending_reset.sum())
            pending_reset = np.logical_or(terminated, truncated)
            t += 1
            to_module = runner._env_to_module(episodes=episodes, batch={}, explore=explore, rl_module=runner.module,
                                              shared_data=runner._shared_data, metrics=runner.metrics,
                                              metrics_prefix_key=(ENV_TO_MODULE_CONNECTOR,), obs=obs)
        if not failed:
            break
    runner._cached_to_module = to_module
    done, ongoing = _episode_chunks(runner, cols, t, start_obs)
    runner._done_episodes_for_metrics.extend(done)
    for chunk in ongoing:
        runner._ongoing_episodes_for_metrics[chunk.id_].append(chunk)
    runner._log_env_steps(metric=runner._metrics_num_env_steps_sampled, num_steps=ts)
    runner._increase_sampled_metrics(ts, len(done))
    return done + ongoing


def _stack(items: list) -> Any:
    if isinstance(items[0], dict):
        return {k: np.stack([o[k] for o in items]) for k in items[0]}
    return np.stack(items)


def _step_without_info_lists(runner, actions):
    """``runner._try_env_step`` on the env below RLlib's `DictInfoToList` (its per-env info dicts are not used)."""
    wrapped = runner.env
    if not isinstance(wrapped, DictInfoToList):
        return runner._try_env_step(actions)
    runner.env = wrapped.env
    try:
        return runner._try_env_step(actions)
    finally:
        if runner.env is wrapped.env:  # unless RLlib recreated the env after a failure
            runner.env = wrapped


def _episode_chunks(runner, cols: _StepColumns, steps: int, start_obs: list) -> tuple[list, list]:
    """The finished episodes and the still-running chunks of one sample; sets the runner's ongoing episodes."""
    obs_space, act_space = runner.env.single_observation_space, runner.env.single_action_space
    seq_no = runner._weights_seq_no
    done: list[SingleAgentEpisode] = []
    ongoing: list[SingleAgentEpisode] = []
    episodes = runner._ongoing_episodes
    ends = cols.terminated[:, :steps] | cols.truncated[:, :steps]
    for i in range(cols.n):
        ep = episodes[i]
        ep_id, t_started = ep.id_, ep.t
        start = 0 if start_obs[i] is not None else None  # None: the env resets at its first step
        boundaries = np.flatnonzero(ends[i] | cols.resetting[i, :steps])
        for b in boundaries.tolist():
            if cols.resetting[i, b]:  # a reset step: the new episode starts at the obs it returned
                ep_id, t_started, start = None, 0, b + 1
                continue
            # b ends an episode: transitions start..b, observations start..b+1
            done.append(_chunk(cols, i, start, b + 1, ep_id, t_started, obs_space, act_space, seq_no,
                               bool(cols.terminated[i, b]), bool(cols.truncated[i, b])))
            start = None
        if start is None:  # finished at the last step: the env resets at the next one
            episodes[i] = SingleAgentEpisode(observation_space=obs_space, action_space=act_space)
            continue
        if steps > start:
            chunk = _chunk(cols, i, start, steps, ep_id, t_started, obs_space, act_space, seq_no, False, False)
            ongoing.append(chunk)
            ep_id, t_started = chunk.id_, t_started + (steps - start)
        episodes[i] = SingleAgentEpisode(
            id_=ep_id, observations=[cols.obs_at(i, steps)], infos=[{}], t_started=t_started, len_lookback_buffer=0,
            observation_space=obs_space, action_space=act_space)
    return done, ongoing


def _chunk(cols: _StepColumns, i: int, start: int, stop: int, ep_id, t_started: int, obs_space, act_space,
           seq_no: int, terminated: bool, truncated: bool) -> SingleAgentEpisode:
    """Env ``i``'s transitions ``start..stop-1`` as a numpy episode chunk."""
    extra = {k: v[i, start:stop] for k, v in cols.model_out.items()}
    extra[WEIGHTS_SEQ_NO] = np.full(stop - start, seq_no)
    return episode_from_arrays(ep_id, cols.obs_slice(i, start, stop + 1), cols.actions[i, start:stop],
                               cols.rewards[i, start:stop], extra, terminated, truncated, t_started, obs_space, act_space)


def episode_from_arrays(ep_id, observations: Any, actions: np.ndarray, rewards: np.ndarray, extra: dict[str, np.ndarray],
                        terminated: bool, truncated: bool, t_started: int, obs_space=None,
                        act_space=None) -> SingleAgentEpisode:
    """A numpy `SingleAgentEpisode` (no lookback, empty infos) over the given arrays, without copying them."""
    from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer

    return SingleAgentEpisode(
        id_=ep_id,
        observations=InfiniteLookbackBuffer(observations),
        infos=InfiniteLookbackBuffer([{} for _ in range(len(actions) + 1)]),
        actions=InfiniteLookbackBuffer(actions),
        rewards=InfiniteLookbackBuffer(rewards),
        extra_model_outputs={k: InfiniteLookbackBuffer(v) for k, v in extra.items()},
        terminated=terminated,
        truncated=truncated,
        t_started=t_started,
        len_lookback_buffer=0,
        observation_space=obs_space,
        action_space=act_space,
    )


class PackedEpisodes:
    """Numpy episode chunks sent between processes as a few contiguous arrays.

    Pickling a thousand `SingleAgentEpisode` objects makes ten thousand small arrays to
    rebuild on the other side (it took 18% of the learner's time, docs/performance.md);
    packed, each column is one array and `unpack` rebuilds the episodes as views into them.
    The lean learner connector builds its train batch from these columns too.
    """

    def __init__(self, episodes: list[SingleAgentEpisode]) -> None:
        chunks = [ep for ep in episodes if len(ep) > 0]
        self.ids = [ep.id_ for ep in chunks]
        self.lengths = np.array([len(ep) for ep in chunks], dtype=np.int64)
        self.t_started = np.array([ep.t_started for ep in chunks], dtype=np.int64)
        self.terminated = np.array([ep.is_terminated for ep in chunks])
        self.truncated = np.array([ep.is_truncated for ep in chunks])
        self.spaces = (chunks[0].observation_space, chunks[0].action_space) if chunks else (None, None)
        obs = [ep.get_observations(slice(0, len(ep) + 1)) for ep in chunks]
        self.observations = ({k: np.concatenate([o[k] for o in obs]) for k in obs[0]} if obs and isinstance(obs[0], dict)
                             else np.concatenate(obs) if obs else None)
        self.actions = np.concatenate([np.asarray(ep.get_actions(slice(0, len(ep)))) for ep in chunks]) if chunks else None
        self.rewards = np.concatenate([np.asarray(ep.get_rewards(slice(0, len(ep)))) for ep in chunks]) if chunks else None
        keys = list(chunks[0].extra_model_outputs) if chunks else []
        self.extra = {k: np.concatenate([np.asarray(ep.get_extra_model_outputs(k, indices=slice(0, len(ep))))
                                         for ep in chunks]) for k in keys}

    def unpack(self) -> list[SingleAgentEpisode]:
        steps = np.concatenate([[0], np.cumsum(self.lengths)])
        obs_rows = steps + np.arange(len(steps))  # each chunk holds one observation more than steps
        out = []
        for j, ep_id in enumerate(self.ids):
            a, b = int(steps[j]), int(steps[j + 1])
            o0, o1 = int(obs_rows[j]), int(obs_rows[j + 1])
            obs = ({k: v[o0:o1] for k, v in self.observations.items()} if isinstance(self.observations, dict)
                   else self.observations[o0:o1])
            out.append(episode_from_arrays(ep_id, obs, self.actions[a:b], self.rewards[a:b],
                                           {k: v[a:b] for k, v in self.extra.items()}, bool(self.terminated[j]),
                                           bool(self.truncated[j]), int(self.t_started[j]), *self.spaces))
        return out
