"""Test helper: what `mto train --resume` put into the RL learner, against the checkpoint's files.

`capture_resumed_learner(monkeypatch)` wraps the training loop so that, the moment the
algorithm is built and restored (before any training step changes it), the learner's
RLModule weights and optimizer state are copied out.  `assert_learner_equals_checkpoint`
compares them tensor by tensor, exactly, with the pickles RLlib wrote under
``<checkpoint>/algorithm/learner_group/learner/`` (read here directly, not through RLlib's
restore, which is what is under test).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts / lists flattened to {"a/b/0/c": leaf}, tensors as numpy arrays."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{prefix}/{key}" if prefix else str(key)))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for i, item in enumerate(value):
            out.update(_leaves(item, f"{prefix}/{i}"))
        return out
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    return {prefix: value}


def capture_resumed_learner(monkeypatch) -> list[dict[str, Any]]:
    """Make the next RL training loop record its learner state before it trains; returns the
    list the states are appended to (one per `_train_loop` call)."""
    from orchestrator.rl import training

    captured: list[dict[str, Any]] = []
    original = training._train_loop

    def recording_loop(cfg, task_space, algo, *args, **kwargs):
        learner = algo.learner_group.get_state()["learner"]
        captured.append({"rl_module": learner["rl_module"], "optimizer": learner["optimizer"]})
        return original(cfg, task_space, algo, *args, **kwargs)

    monkeypatch.setattr(training, "_train_loop", recording_loop)
    return captured


def checkpoint_learner(checkpoint: str | Path) -> dict[str, Any]:
    """The RLModule weights and optimizer state stored in an `mto` checkpoint folder."""
    learner_dir = Path(checkpoint) / "algorithm" / "learner_group" / "learner"
    modules = {}
    for state_file in sorted((learner_dir / "rl_module").glob("*/module_state.pkl")):
        with open(state_file, "rb") as f:
            modules[state_file.parent.name] = pickle.load(f)
    with open(learner_dir / "state.pkl", "rb") as f:
        optimizer = pickle.load(f)["optimizer"]
    return {"rl_module": modules, "optimizer": optimizer}


def assert_learner_equals_checkpoint(resumed: dict[str, Any], checkpoint: str | Path) -> int:
    """Every weight and optimizer entry equal, bit for bit; returns how many tensors were compared."""
    stored = checkpoint_learner(checkpoint)
    tensors = 0
    saved: dict[str, Any] = {}
    for part in ("rl_module", "optimizer"):  # weights first: the likelier thing to be wrong
        saved = _leaves(stored[part])
        live = _leaves(resumed[part])
        assert saved, f"no {part} state found in {checkpoint}"
        assert sorted(live) == sorted(saved), (
            f"{part} keys differ: only resumed {sorted(set(live) - set(saved))[:5]}, "
            f"only in checkpoint {sorted(set(saved) - set(live))[:5]}"
        )
        for key, expected in saved.items():
            got = live[key]
            if isinstance(expected, np.ndarray):
                tensors += 1
                assert np.asarray(got).dtype == expected.dtype and np.array_equal(got, expected), f"{part}/{key}"
            else:
                assert got == expected, f"{part}/{key}: {got!r} != {expected!r}"
    # Adam's moments exist only after a step: the comparison covered a trained optimizer.
    assert any(k.endswith("exp_avg") for k in saved), "checkpoint holds no optimizer moments"
    return tensors
