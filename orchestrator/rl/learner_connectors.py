"""A lean PPO learner connector: episode chunks to a train batch with GAE, in array operations.

RLlib's default PPO learner pipeline (`AddOneTsToEpisodesAndTruncate`, then adding
observations and columns episode by episode, `BatchIndividualItems`, `NumpyToTensor`,
`GeneralAdvantageEstimation` with a Python loop over every timestep) cost a quarter of
the learner's time on the quickstart (about 1,000 episode chunks per 16k-step batch;
README, Performance). `EpisodesToTrainBatchWithGAE` builds the same batch, column for
column and row for row, from the chunks' numpy arrays:

- each chunk of ``L`` steps gives ``L + 1`` rows: its steps, then RLlib's bootstrap row
  (the final observation, the last action and model outputs repeated, reward 0,
  ``loss_mask`` False; a chunk that did not end is marked truncated at its last step);
- value targets and advantages are RLlib's ``compute_value_targets`` on those rows (one
  forward pass of the value head), computed per chunk side by side instead of row by row;
  advantages are standardised over all rows, bootstrap rows included, as RLlib does.

It does not modify the episodes (RLlib's pipeline appends the bootstrap step to them and
renames them). For a Box or Dict-of-Box observation, a Discrete action and a stateless
module with a value function (`rl.lean_connectors`); equality with RLlib's pipeline is tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

from orchestrator.rl.vector_sampling import PackedEpisodes


def gae_per_chunk(values: np.ndarray, rewards: np.ndarray, terminated_last: np.ndarray, lengths: np.ndarray,
                  gamma: float, lambda_: float) -> np.ndarray:
    """RLlib's ``compute_value_targets`` over concatenated chunks with bootstrap rows, vectorised.

    ``values``/``rewards``: one entry per row (each chunk's ``L`` steps then its bootstrap row);
    ``terminated_last``: whether each chunk's last step ended the episode; ``lengths``: ``L`` per
    chunk. Returns the value targets per row (float32), equal to RLlib's row-by-row loop.
    """
    n = len(lengths)
    width = int(lengths.max()) + 1
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    rows = starts[:, None] + np.arange(width)[None, :]
    inside = np.arange(width)[None, :] <= lengths[:, None]  # steps and the bootstrap row
    rows = np.where(inside, rows, 0)
    v = np.where(inside, values[rows], 0.0)
    r = np.where(inside, rewards[rows], 0.0)
    # Within a chunk: delta_t = r_t + gamma * V_{t+1} - V_t, the last step's bootstrap gated by termination.
    step = np.arange(width)[None, :]
    last = lengths[:, None] - 1
    next_v = np.concatenate([v[:, 1:], np.zeros((n, 1))], axis=1)
    gate = np.where(step == last, 1.0 - terminated_last[:, None], 1.0)
    delta = r + gamma * gate * next_v - v
    adv = np.zeros((n, width))
    running = np.zeros(n)
    for t in range(width - 2, -1, -1):  # steps only; nothing propagates past a chunk's last step
        running = np.where(t <= last[:, 0], delta[:, t] + np.where(t == last[:, 0], 0.0, gamma * lambda_ * running), 0.0)
        adv[:, t] = running
    out = np.empty(len(values))
    for_steps = inside & (step <= last)
    out[rows[for_steps]] = adv[for_steps]
    # The bootstrap row: its next row is the next chunk's first (0 after the last chunk), and RLlib's
    # loop lets the next chunk's first advantage flow into it (the row is masked out of the loss).
    boot = starts + lengths
    next_first_v = np.append(values[starts[1:]], 0.0)
    next_first_adv = np.append(out[starts[1:]], 0.0)
    out[boot] = rewards[boot] + gamma * next_first_v - values[boot] + gamma * lambda_ * next_first_adv
    return (out + values).astype(np.float32)


class EpisodesToTrainBatchWithGAE(ConnectorV2):
    """Learner connector: numpy episode chunks -> the PPO train batch (tensors) with advantages."""

    def __init__(self, input_observation_space=None, input_action_space=None, *, gamma: float, lambda_: float,
                 decoupled: bool = False, max_importance_weight: float = 2.0, **kwargs: Any) -> None:
        super().__init__(input_observation_space, input_action_space, **kwargs)
        self.gamma, self.lambda_ = float(gamma), float(lambda_)
        self.decoupled, self.max_importance_weight = bool(decoupled), float(max_importance_weight)

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, **kwargs) -> Any:
        packed = PackedEpisodes(episodes)  # one array per column; each chunk's L + 1 observations in a row
        lengths = packed.lengths
        rows = int(np.sum(lengths + 1))
        chunk = np.repeat(np.arange(len(lengths)), lengths + 1)
        offset = np.arange(rows) - np.repeat(np.cumsum(lengths + 1) - (lengths + 1), lengths + 1)
        bootstrap = offset == lengths[chunk]  # the row after each chunk's last step
        # Each row's step; a bootstrap row repeats its chunk's last step (RLlib's AddOneTsToEpisodesAndTruncate).
        step = (np.cumsum(lengths) - lengths)[chunk] + np.minimum(offset, lengths[chunk] - 1)
        rewards = packed.rewards[step].astype(np.float32)
        rewards[bootstrap] = 0.0
        terminated = packed.terminated
        last_step = np.flatnonzero(bootstrap) - 1
        columns: dict[str, Any] = {
            Columns.OBS: packed.observations,
            Columns.ACTIONS: packed.actions[step],
            Columns.REWARDS: rewards,
            Columns.TERMINATEDS: _flags(rows, last_step, terminated),
            # A chunk that did not end is cut at its last step (RLlib's AddOneTsToEpisodesAndTruncate).
            Columns.TRUNCATEDS: _flags(rows, last_step, ~terminated),
            Columns.LOSS_MASK: ~bootstrap,
            **{key: column[step] for key, column in packed.extra.items()},
        }
        # With Learner actors (num_learners >= 1) the module is wrapped in DDP, which hides
        # compute_values; these no-grad passes need no gradient sync, so use the module itself.
        module = rl_module[DEFAULT_MODULE_ID].unwrapped()
        device = next(module.parameters()).device
        tensors = _to_torch(columns, device)
        logits = None
        with torch.no_grad():
            if self.decoupled:  # one forward pass for the proximal policy's logits and the values
                out = module.forward_train(tensors)
                logits = out[Columns.ACTION_DIST_INPUTS]
                values = module.compute_values(tensors, embeddings=out.get(Columns.EMBEDDINGS))
            else:
                values = module.compute_values(tensors)
            values = values.cpu().numpy().astype(np.float64)
        targets = gae_per_chunk(values, rewards.astype(np.float64), terminated, lengths, self.gamma, self.lambda_)
        advantages = targets - values.astype(np.float32)
        advantages = (advantages - advantages.mean()) / max(1e-4, advantages.std())
        tensors[Postprocessing.ADVANTAGES] = torch.from_numpy(advantages.astype(np.float32)).to(device)
        tensors[Postprocessing.VALUE_TARGETS] = torch.from_numpy(targets).to(device)
        if self.decoupled:
            decouple_from_behaviour_policy(module, tensors, self.max_importance_weight, logits)
        batch[DEFAULT_MODULE_ID] = tensors
        return batch


def decouple_from_behaviour_policy(module, batch: dict[str, Any], max_importance_weight: float,
                                   logits: torch.Tensor | None = None) -> None:
    """Decoupled PPO (Hilton et al. 2021, "Batch size-invariance for policy optimization") for a batch
    sampled with older weights (``rl.overlap_sampling``).

    RLlib's PPO loss clips the ratio against ``action_logp`` and penalises the KL from
    ``action_dist_inputs``, both the behaviour policy's. Here both are replaced by the policy
    the update starts from (the proximal policy), so the trust region and the adaptive KL
    coefficient see one update's change, as in synchronous PPO; the off-policy correction
    moves into the advantage as the importance weight pi_prox / pi_behaviour, truncated at
    ``max_importance_weight`` (as V-trace truncates its weights). RLlib's clipped objective is
    then the decoupled objective: w * min(r A, clip(r) A) with r = pi / pi_prox, w > 0.
    """
    with torch.no_grad():
        if logits is None:  # ``logits``: the module's forward_train output on ``batch``, when already computed
            logits = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
        dist = module.get_train_action_dist_cls().from_logits(logits)
        logp_prox = dist.logp(batch[Columns.ACTIONS])
    weight = torch.exp(logp_prox - batch[Columns.ACTION_LOGP]).clamp(max=max_importance_weight)
    batch[Postprocessing.ADVANTAGES] = batch[Postprocessing.ADVANTAGES] * weight
    batch[Columns.ACTION_LOGP] = logp_prox
    batch[Columns.ACTION_DIST_INPUTS] = logits


def _flags(rows: int, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(rows, bool)
    out[at] = values
    return out


def _to_torch(columns: dict[str, Any], device) -> dict[str, Any]:
    def one(x):
        if isinstance(x, dict):
            return {k: one(v) for k, v in x.items()}
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    return {k: one(v) for k, v in columns.items()}
