"""TaskSpace: ordering, lookup, subsets and errors that suggest close names."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import TaskSpace, UnknownTaskError

SPACE = TaskSpace(("log", "planks", "stick", "crafting_table", "wooden_pickaxe"), (0, 1, 2, 2, 3))


def test_len_iter_index_and_contains():
    assert len(SPACE) == 5
    assert list(SPACE) == ["log", "planks", "stick", "crafting_table", "wooden_pickaxe"]
    assert SPACE.index("stick") == 2
    assert "planks" in SPACE and "diamond" not in SPACE


def test_indices_are_int64_in_given_order():
    idx = SPACE.indices(["wooden_pickaxe", "log"])
    assert idx.dtype == np.int64
    assert idx.tolist() == [4, 0]


def test_subset_keeps_order_and_depth():
    sub = SPACE.subset(["stick", "log"])
    assert sub.names == ("stick", "log")
    assert sub.depth == (2, 0)
    assert TaskSpace(("a", "b")).subset(["b"]).depth is None


def test_unknown_name_is_named_with_close_matches():
    with pytest.raises(UnknownTaskError, match=r"'wooden_pickax'.*did you mean 'wooden_pickaxe'"):
        SPACE.index("wooden_pickax")
    with pytest.raises(ValueError):  # UnknownTaskError is a ValueError
        SPACE.subset(["plank", "log"])


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(UnknownTaskError) as err:
        SPACE.index("zzzzzzzz")
    assert "did you mean" not in str(err.value) and "'zzzzzzzz'" in str(err.value)


def test_duplicates_and_depth_length_are_refused():
    with pytest.raises(ValueError, match="repeated.*'log'"):
        TaskSpace(("log", "log"))
    with pytest.raises(ValueError, match="depth has 1 entries for 2 names"):
        TaskSpace(("a", "b"), (0,))


@settings(deadline=None)  # runs product code: a busy machine must not turn a slow example into a failure
@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=20, unique=True), st.data())
def test_index_round_trips(names, data):
    space = TaskSpace(tuple(names))
    picked = data.draw(st.lists(st.sampled_from(names), max_size=10))
    assert [space.names[i] for i in space.indices(picked)] == picked
    assert all(space.index(n) == i for i, n in enumerate(names))
