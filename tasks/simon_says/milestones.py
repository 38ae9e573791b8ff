"""Count milestones: holding the number of an ingredient that a recipe needs.

The exploration bonus pays for an item the first time it is obtained in an episode, so
it cannot tell 1 cobblestone from the 3 a stone pickaxe needs or the 8 a furnace needs:
every ingredient is long mastered by the time those recipes are the frontier, and the step
that is hard to discover (mine more of it) earns nothing. A count milestone ("cobblestone
x3") is reached the first time an episode's inventory holds that many; it serves the
recipes that need exactly that count, and the bonus pays for it while one of them still
pays (see `orchestrator.rl.curriculum_wrapper`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.simon_says.techtree_data import TechTree

__all__ = ["CountMilestones", "count_milestones"]


@dataclass(frozen=True)
class CountMilestones:
    """The milestones of a tree, in a fixed order.

    Attributes:
        names: ``"<item> x<count>"`` per milestone.
        item: int64 [m] the ingredient's index in the tree's items.
        count: int32 [m] how many of it.
        serves: bool [m, items] the recipe results that need that count of it.
    """

    names: tuple[str, ...]
    item: np.ndarray
    count: np.ndarray
    serves: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def count_milestones(tree: TechTree) -> CountMilestones:
    """Every (ingredient, count >= 2) of the tree's crafting recipes, with the items it serves."""
    index = tree.item_index()
    served: dict[tuple[str, int], set[str]] = {}
    for recipe in tree.recipes:
        for name, count in recipe.ingredients:
            if count >= 2:
                served.setdefault((name, int(count)), set()).add(recipe.result)
    keys = sorted(served)
    serves = np.zeros((len(keys), len(tree.item_names)), dtype=bool)
    for row, key in enumerate(keys):
        serves[row, [index[r] for r in served[key]]] = True
    return CountMilestones(
        names=tuple(f"{name} x{count}" for name, count in keys),
        item=np.array([index[name] for name, _ in keys], dtype=np.int64),
        count=np.array([count for _, count in keys], dtype=np.int32),
        serves=serves,
    )
