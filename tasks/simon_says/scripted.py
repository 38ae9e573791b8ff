"""A scripted techtree player that follows the tech tree to any obtainable item.

It proves the tree is complete and reachable (tests, benchmarks) and gives a ceiling for
learning curves. For a goal it picks the shallowest way to obtain each missing item
(mine a block at some level with some tool, craft a recipe, smelt), gathers inputs first,
then tools and stations, and only then places the station and crafts/smelts, so a station
is never left behind while its inputs are still being gathered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.simon_says.techtree_data import CRAFTING_TABLE, FURNACE, TechTree
from tasks.simon_says.techtree_env import FUEL_UNIT, TechTreeCore


@dataclass(frozen=True)
class _Way:
    kind: str  # "mine" | "craft" | "smelt"
    index: int  # block, recipe or smelting index
    tool: str | None = None  # harvest tool for "mine"
    depth: int = 0


class TechTreePlanner:
    """``act(core, env_index, goal_item)`` -> the next action for one sub-env of a core."""

    def __init__(self, core: TechTreeCore) -> None:
        self.core = core
        tree: TechTree = core.tree
        self.tree = tree
        self.items = tree.item_index()
        self.actions = {name: a for a, name in enumerate(core.action_names)}
        depth = tree.depth
        ways: dict[str, list[_Way]] = {}
        level_totals = [sum(b.frequency[lv] for b in tree.blocks) for lv in range(len(tree.blocks[0].frequency))]
        for b, blk in enumerate(tree.blocks):
            deep_only = blk.frequency[0] == 0
            for d in blk.drops:
                if d.item not in depth:
                    continue
                tools = [t for t in blk.harvest_tools if t in depth] or [None]
                for t in tools:
                    need = [depth[t]] if t else []
                    if deep_only:
                        need.append(depth["wooden_pickaxe"])
                    # an unlikely drop or a rare block costs like a few more steps of depth
                    share = max(f / total for f, total in zip(blk.frequency, level_totals) if total)
                    penalty = (d.chance < 1) + 2 * (share < 0.02)
                    ways.setdefault(d.item, []).append(_Way("mine", b, t, 1 + max(need, default=-1) + penalty))
        for r, rec in enumerate(tree.recipes):
            need = [depth[n] for n, _ in rec.ingredients] + ([depth[CRAFTING_TABLE]] if rec.needs_table else [])
            ways.setdefault(rec.result, []).append(_Way("craft", r, depth=1 + max(need)))
        for s, (src, out, _) in enumerate(tree.smelting):
            need = [depth[src], depth[FURNACE], depth["planks"]]
            ways.setdefault(out, []).append(_Way("smelt", s, depth=1 + max(need)))
        self.way = {item: min(opts, key=lambda w: w.depth) for item, opts in ways.items()}

    # ------------------------------------------------------------------ state
    def _count(self, i: int, item: str) -> int:
        return int(self.core.inventory[i, self.items[item]])

    def act(self, i: int, goal: str) -> int:
        """Next action for sub-env ``i`` of the core towards holding one ``goal``."""
        action = self._want(i, goal, 1)
        return self.actions["explore"] if action is None else action

    def _want(self, i: int, item: str, count: int) -> int | None:
        """An action that makes progress towards ``count`` x ``item``; None if already held."""
        if self._count(i, item) >= count:
            return None
        way = self.way[item]
        if way.kind == "mine":
            return self._mine(i, way, count)
        if way.kind == "craft":
            return self._craft(i, way.index, item, count)
        return self._smelt(i, way.index, count - self._count(i, item))

    def _mine(self, i: int, way: _Way, count: int) -> int:
        core, blk = self.core, self.tree.blocks[way.index]
        if way.tool and self._count(i, way.tool) == 0:
            return self._want(i, way.tool, 1)
        level = int(core.level[i])
        if blk.frequency[level] == 0:
            target = int(np.argmax(blk.frequency))
            if target > level:
                if not any(self._count(i, p) for p in self.tree.pickaxes):
                    return self._want(i, "wooden_pickaxe", 1)
                return self.actions["descend"]
            return self.actions["ascend"]
        if core.nearby[i, way.index] > 0:
            return self.actions[f"mine:{blk.name}"]
        return self.actions["explore"]

    def _craft(self, i: int, r: int, item: str, count: int) -> int:
        rec = self.tree.recipes[r]
        # gather the inputs of every craft still needed before placing the table
        crafts = -(-(count - self._count(i, item)) // rec.count)
        # deepest first: its chain may place (use up) a shallower ingredient such as a furnace
        for name, need in sorted(rec.ingredients, key=lambda x: -self.tree.depth[x[0]]):
            action = self._want(i, name, need * crafts)
            if action is not None:
                return action
        if rec.needs_table and not self.core.table[i]:
            if self._count(i, CRAFTING_TABLE) == 0:
                return self._want(i, CRAFTING_TABLE, 1)
            return self.actions[f"place:{CRAFTING_TABLE}"]
        return self.actions[f"craft:{rec.name}"]

    def _smelt(self, i: int, s: int, missing: int) -> int:
        core = self.core
        src = self.tree.smelting[s][0]
        # all inputs first: leaving to mine more would leave the placed furnace behind
        action = self._want(i, src, 1 if core.furnace[i] else missing)
        if action is not None:
            return action
        has_fuel = core.fuel[i] >= FUEL_UNIT or any(self._count(i, f) for f, _ in self.tree.fuels if f != src)
        if not has_fuel:
            return self._want(i, "planks", 1)
        if not core.furnace[i]:
            if self._count(i, FURNACE) == 0:
                return self._want(i, FURNACE, 1)
            return self.actions[f"place:{FURNACE}"]
        return self.actions[f"smelt:{src}"]


def steps_to_obtain(goal: str, seed: int = 0, max_steps: int = 5000) -> int | None:
    """Steps the scripted player needs to obtain ``goal`` in a fresh techtree game (None: not within max_steps)."""
    from tasks.simon_says.envs import SimonSaysVectorEnv

    env = SimonSaysVectorEnv(num_envs=1, tasks=[goal], horizon=max_steps)
    env.reset(seed=seed)
    planner = TechTreePlanner(env.core)
    for step in range(1, max_steps + 1):
        _, _, terminated, truncated, _ = env.step(np.array([planner.act(0, goal)]))
        if terminated[0]:
            return step
        if truncated[0]:
            return None
    return None

