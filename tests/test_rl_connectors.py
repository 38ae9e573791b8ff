"""The lean EnvRunner connectors: same columns and the same action distribution as RLlib's defaults."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ray.rllib")

from ray.rllib.core.columns import Columns  # noqa: E402

from orchestrator.rl.connectors import SampleCategoricalActions, StackObservations  # noqa: E402


def test_stack_observations_is_one_float_tensor():
    obs = [np.full(5, i, dtype=np.float32) for i in range(3)]
    out = StackObservations()(rl_module=None, batch={}, episodes=[], obs=obs)
    assert out[Columns.OBS].dtype == torch.float32
    assert out[Columns.OBS].shape == (3, 5)
    assert out[Columns.OBS][2, 0] == 2


def test_sampled_actions_follow_the_softmax_and_logp_matches():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0, -1e9]]).repeat(20000, 1)
    out = SampleCategoricalActions()(rl_module=None, batch={Columns.ACTION_DIST_INPUTS: logits}, episodes=[], explore=True)
    actions = out[Columns.ACTIONS]
    freq = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(freq, torch.softmax(logits[0], -1).numpy(), atol=0.015)
    assert freq[3] == 0  # a -1e9 logit (a masked action) is never drawn
    expected = torch.log_softmax(logits, -1).numpy()[np.arange(len(actions)), actions]
    np.testing.assert_allclose(out[Columns.ACTION_LOGP], expected, rtol=1e-6)
    assert isinstance(out[Columns.ACTION_DIST_INPUTS], np.ndarray)


def test_greedy_when_not_exploring():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]])
    out = SampleCategoricalActions()(rl_module=None, batch={Columns.ACTION_DIST_INPUTS: logits}, episodes=[], explore=False)
    assert out[Columns.ACTIONS].tolist() == [1, 0]


def test_dict_observations_are_stacked_per_key():
    obs = [{"obs": np.zeros(4, np.float32), "action_mask": np.ones(3, np.float32)} for _ in range(2)]
    out = StackObservations()(rl_module=None, batch={}, episodes=[], obs=obs)[Columns.OBS]
    assert out["obs"].shape == (2, 4) and out["action_mask"].shape == (2, 3)
