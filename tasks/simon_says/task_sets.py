"""Which items are Simon Says tasks, per backend, and the errors for bad task names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks.task_space import TaskSpace, UnknownTaskError, suggest

BACKENDS: tuple[str, ...] = ("techtree", "crafter", "minerl")


class UnobtainableItemError(UnknownTaskError):
    """A real Minecraft item that cannot be obtained without combat, trading, farming, Nether or End."""


def check_backend(backend: str) -> None:
    """Raise ``ValueError`` naming the valid backends if ``backend`` is not one."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown Simon Says backend {backend!r}{suggest(str(backend), BACKENDS)} "
                         f"(valid: {', '.join(BACKENDS)})")


def _techtree_space(tasks: Sequence[str] | None) -> TaskSpace:
    from tasks.simon_says.techtree_data import load_tech_tree

    tree = load_tech_tree()
    full = TaskSpace(tree.item_names, tuple(tree.depth[n] for n in tree.item_names))
    if tasks is None:
        return full
    if isinstance(tasks, str):
        raise TypeError(f"tasks must be a sequence of item names, not the string {tasks!r}")
    for name in tasks:
        if name in full:
            continue
        if name in tree.unobtainable:
            hint = " (charcoal counts as coal here)" if name == "charcoal" else ""
            raise UnobtainableItemError(
                f"item {name!r} exists in Minecraft {tree_version()} but cannot be obtained from an overworld "
                f"spawn without combat, trading, farming, the Nether or the End{hint}; obtainable items close "
                f"to it{suggest(name, full.names) or ': none'}")
        raise UnknownTaskError(f"unknown item {name!r}{suggest(str(name), full.names)} "
                               f"({len(full)} obtainable items; see make_task_space().names)")
    return full.subset(tasks)


def tree_version() -> str:
    from tasks.simon_says.techtree_data import DATA_VERSION

    return DATA_VERSION


def make_task_space(tasks: Sequence[str] | None = None, backend: str = "techtree") -> TaskSpace:
    """The Simon Says tasks of ``backend``: every obtainable item (by depth, then name) or ``tasks``.

    ``minerl`` shares the techtree item vocabulary; ``crafter`` uses Crafter's achievements.
    """
    check_backend(backend)
    if backend == "crafter":
        from tasks.simon_says import crafter_backend

        return crafter_backend.make_task_space(tasks)
    return _techtree_space(tasks)


def prerequisites(backend: str = "techtree") -> dict[str, frozenset[str]]:
    """Direct prerequisites of every obtainable item: ingredients, harvest tool, station, fuel.

    Where an item can be obtained several ways, the way with the smallest depth is given.
    """
    check_backend(backend)
    if backend == "crafter":
        from tasks.simon_says import crafter_backend

        return crafter_backend.prerequisites()
    from tasks.simon_says.techtree_data import load_tech_tree

    return dict(load_tech_tree().prerequisites)


def goal_prerequisite_items(task_names: Sequence[str], item_names: Sequence[str],
                            backend: str = "techtree") -> np.ndarray:
    """Bool matrix ``[task, item]``: the item is needed, directly or through other items, to
    obtain the task's goal (its ingredients, tools, stations, fuel, and theirs); the goal
    item itself is not included. The exploration bonus scoped to a goal uses it."""
    direct = prerequisites(backend)
    column = {name: i for i, name in enumerate(item_names)}
    matrix = np.zeros((len(task_names), len(item_names)), dtype=bool)
    for row, goal in enumerate(task_names):
        seen: set[str] = set()
        stack = list(direct.get(goal, ()))
        while stack:
            item = stack.pop()
            if item in seen:
                continue
            seen.add(item)
            stack.extend(direct.get(item, ()))
        seen.discard(goal)
        matrix[row, [column[i] for i in seen if i in column]] = True
    return matrix

