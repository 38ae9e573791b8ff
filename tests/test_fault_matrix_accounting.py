"""The fault matrix does not call a row survived when its own accounting goes negative."""

from __future__ import annotations

import pytest

from benchmarks.fault_matrix import Row


@pytest.mark.parametrize("field", ["episodes_lost", "env_steps_lost"])
def test_a_negative_loss_marks_the_row_not_survived(field: str) -> None:
    # episodes_lost = -39 is what the matrix measured when the RL restore was deleted.
    figures = {"env_steps_lost": 0, "episodes_lost": 0, field: -39}
    row = Row("driver SIGKILL, then --resume", True, recover_s=1.0, outcome="finished", **figures)
    assert row.survived is False
    assert row.outcome.startswith(f"accounting went negative ({field})")


def test_zero_or_unknown_losses_leave_the_verdict_alone() -> None:
    assert Row("x", True, 0, 0, 1.0, "finished").survived is True
    assert Row("x", True, None, None, None, "finished").survived is True
    assert Row("x", False, 5, 3, None, "run failed").survived is False
