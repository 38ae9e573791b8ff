"""RLlib's action-masking pattern for our RLModules: the env reports which actions would do
something (`task.action_mask: true` makes the observation a ``Dict`` of ``observations`` and
``action_mask``), the module runs its network on ``observations`` and puts the lowest float on
the logits of the rest, so an invalid action is never sampled and gets no gradient.

`ActionMaskedPPOModule` is RLlib's default PPO MLP with the mask applied; `MultiTaskPPOModule`
calls `flat_observations` / `masked_logits` itself. Both work unchanged on flat observations
(mask off).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns

from policies.action_masking import mask_logits

OBSERVATIONS, ACTION_MASK = "observations", "action_mask"


def unmasked_space(space: gym.Space) -> gym.Space:
    """The network's input space: ``space["observations"]`` of a masked Dict space, else ``space``."""
    if isinstance(space, gym.spaces.Dict) and ACTION_MASK in space.spaces:
        return space[OBSERVATIONS]
    return space


def flat_observations(obs: Any) -> Any:
    """The network's input from an observation batch (a masked Dict batch or a flat one)."""
    return obs[OBSERVATIONS] if isinstance(obs, dict) else obs


def masked_logits(logits: Any, obs: Any) -> Any:
    """``logits`` with the invalid actions of a masked Dict observation batch masked (flat: unchanged)."""
    return mask_logits(logits, obs[ACTION_MASK]) if isinstance(obs, dict) else logits


class ActionMaskedPPOModule(DefaultPPOTorchRLModule):
    """RLlib's default PPO module (MLP encoder, pi and vf heads) behind the action mask: forward
    passes and values on ``obs["observations"]``, logits masked with ``obs["action_mask"]``."""

    def __init__(self, *args, observation_space: gym.Space | None = None, **kwargs) -> None:
        # The catalog sizes the encoder from the observation space: give it the network's input.
        self._space_with_mask = observation_space
        super().__init__(*args, observation_space=unmasked_space(observation_space), **kwargs)

    def setup(self) -> None:
        super().setup()
        self.observation_space = self._space_with_mask  # what RLlib checks env observations against

    def _masked_forward(self, forward, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        out = forward({**batch, Columns.OBS: flat_observations(obs)}, **kwargs)
        out[Columns.ACTION_DIST_INPUTS] = masked_logits(out[Columns.ACTION_DIST_INPUTS], obs)
        return out

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._masked_forward(super()._forward, batch, **kwargs)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._masked_forward(super()._forward_train, batch, **kwargs)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None):
        return super().compute_values({**batch, Columns.OBS: flat_observations(batch[Columns.OBS])}, embeddings)
