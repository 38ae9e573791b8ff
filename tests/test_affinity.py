"""Lookahead task affinity: the formula, the running average, and the torch lookahead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curricula.affinity import TaskAffinity, lookahead_affinity
from policies.affinity import lookahead_losses


def test_affinity_formula_by_hand() -> None:
    before = [2.0, 4.0]
    after = [[1.0, 5.0], [2.0, 2.0]]  # row: step on task i; column: loss of task j
    np.testing.assert_allclose(lookahead_affinity(before, after), [[0.5, -0.25], [0.0, 0.5]])
    np.testing.assert_allclose(lookahead_affinity(before, after, lr=0.1), [[5.0, -2.5], [0.0, 5.0]])
    with pytest.raises(ValueError, match=r"losses_after must be \[2 x 2\]"):
        lookahead_affinity(before, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="lr must be a positive number"):
        lookahead_affinity(before, after, lr=0.0)


def test_signed_losses_keep_positive_meaning_helps_below_zero() -> None:
    # PPO-style losses can be negative: task a at -2 drops to -2.5 (better by 0.5 of |-2|),
    # task b at 4 rises to 5 (worse by 1/4); a zero loss has no scale.
    before = [-2.0, 4.0, 0.0]
    after = [[-2.5, 5.0, 1.0], [-1.0, 2.0, 0.0], [-2.0, 4.0, 0.0]]
    np.testing.assert_allclose(lookahead_affinity(before, after, signed_losses=True),
                               [[0.25, -0.25, np.nan], [-0.5, 0.5, np.nan], [0.0, 0.0, np.nan]])
    # Positive losses: the same numbers as the plain formula.
    np.testing.assert_allclose(lookahead_affinity([2.0, 4.0], [[1.0, 5.0], [2.0, 2.0]], signed_losses=True),
                               lookahead_affinity([2.0, 4.0], [[1.0, 5.0], [2.0, 2.0]]))
    # The plain formula leaves a negative loss unmeasured rather than flipping its sign.
    assert np.isnan(lookahead_affinity(before, after)[:, 0]).all()
    running = TaskAffinity(["a", "b", "c"], signed_losses=True)
    running.update(before, after)
    np.testing.assert_allclose(running.matrix(), lookahead_affinity(before, after, signed_losses=True))
    restored = TaskAffinity(["a", "b", "c"])
    restored.load_state_dict(running.state_dict())
    assert restored.signed_losses
    np.testing.assert_allclose(restored.matrix(), running.matrix())


def test_signed_average_is_a_ratio_of_sums_so_a_loss_near_zero_cannot_dominate() -> None:
    running = TaskAffinity(["a", "b"], signed_losses=True)
    # Task b's loss is 1e-4 in the first batch: that measurement's own ratio for 1 -> b is -999.
    first = running.update([2.0, 1e-4], [[1.0, 0.0], [2.0, 0.1]])
    assert first[1, 1] == pytest.approx(-999.0)
    running.update([2.0, 4.0], [[1.5, 4.0], [2.0, 3.0]])
    # Column a: (1 + 0.5) / (2 + 2) and 0 / 4; column b: (1e-4 + 0) / 4.0001 and (-0.0999 + 1) / 4.0001.
    np.testing.assert_allclose(running.matrix(), [[0.375, 1e-4 / 4.0001], [0.0, 0.9001 / 4.0001]], rtol=1e-9)
    scaled = TaskAffinity(["a", "b"], lr_normalized=True, signed_losses=True)
    scaled.update([2.0, 1e-4], [[1.0, 0.0], [2.0, 0.1]], lr=0.5)
    scaled.update([2.0, 4.0], [[1.5, 4.0], [2.0, 3.0]], lr=0.5)
    np.testing.assert_allclose(scaled.matrix(), running.matrix() / 0.5, rtol=1e-9)


def test_running_average_skips_unmeasured_entries() -> None:
    affinity = TaskAffinity(["a", "b"])
    affinity.update([2.0, 4.0], [[1.0, 5.0], [2.0, 2.0]])
    affinity.update([2.0, 4.0], [[1.5, 4.0], [np.nan, np.nan]])  # task b absent from this batch
    np.testing.assert_allclose(affinity.matrix(), [[0.375, -0.125], [0.0, 0.5]])
    np.testing.assert_array_equal(affinity.counts, [[2, 2], [1, 1]])
    copy = TaskAffinity(["a", "b"])
    copy.load_state_dict(affinity.state_dict())
    np.testing.assert_allclose(copy.matrix(), affinity.matrix())
    with pytest.raises(ValueError, match="pass lr"):
        TaskAffinity(["a", "b"], lr_normalized=True).update([1, 1], np.ones((2, 2)))


def test_torch_lookahead_known_answer_and_restores_parameters() -> None:
    # L_t(w) = (w - c_t)^2 at w = 0, c = (1, -1, 1): a step of lr=0.1 on task 0 moves w to 0.2,
    # so L = (0.64, 1.44, 0.64) against 1 before: affinity 0.36, -0.44, 0.36.
    w = torch.zeros(1, requires_grad=True)
    c = torch.tensor([1.0, -1.0, 1.0])

    def losses():
        return [((w - ct) ** 2).sum() for ct in c]

    current = losses()
    before, after = lookahead_losses([w], current, losses, lr=0.1)
    np.testing.assert_allclose(before, [1.0, 1.0, 1.0])
    matrix = lookahead_affinity(before, after)
    np.testing.assert_allclose(matrix[0], [0.36, -0.44, 0.36], atol=1e-6)
    np.testing.assert_allclose(matrix[1], [-0.44, 0.36, -0.44], atol=1e-6)
    assert float(w.detach()) == 0.0  # restored
    sum(current).backward()  # the caller's graph survives the lookahead
    assert w.grad is not None


def test_absent_task_gives_nan_row_and_column() -> None:
    w = torch.zeros(1, requires_grad=True)

    def losses():
        return [((w - 1.0) ** 2).sum(), None]

    before, after = lookahead_losses([w], losses(), losses, lr=0.1)
    assert np.isnan(before[1]) and np.isnan(after[1]).all() and np.isnan(after[0, 1])
