"""The techtree backend: symbolic Minecraft, N environments stepped with whole-array numpy ops.

State per sub-env: inventory counts, the blocks nearby (counts per block type), the level
(surface / underground / deep), whether a crafting table / furnace is nearby, furnace fuel
left and the step count. Actions form one flat ``Discrete`` index (see ``action_names``):

  explore                   move on: the blocks nearby are redrawn for the current level;
                            a placed table / furnace is left behind
  descend / ascend          change level (descending digs: it needs any pickaxe)
  mine:<block>              mine one nearby block of that type, if the held tools can
                            harvest it (minecraft-data ``harvestTools``); yields its drops
  place:crafting_table|furnace   put one from the inventory down nearby
  craft:<recipe>            minecraft-data recipe; 3x3 recipes need a table nearby
  smelt:<input>             needs a furnace nearby and fuel in the inventory

Actions whose preconditions fail do nothing, which keeps the real game's long chains of
prerequisites: a random policy gets logs but (essentially) never diamonds.
Tools never wear out; mobs, hunger and farming are not modelled.

``TechTreeCore`` holds the arrays; ``SimonSaysVectorEnv`` / ``SimonSaysEnv`` (gymnasium)
add autoreset, task sampling and the info dict on top of it.

``TechTreeCore.action_mask()`` says which actions would change the state right now (the
preconditions above, the same tests ``step`` applies): ``explore`` always; ``descend`` with a
pickaxe above the deepest level; ``ascend`` below the surface; ``mine:<b>`` with a ``b``
nearby and a tool that harvests it; ``place:<s>`` holding one and none placed here;
``craft:<r>`` holding every ingredient (and a table nearby for 3x3); ``smelt:<i>`` with a
furnace nearby, the input and fuel. With ``action_mask=True`` the core keeps "holds every
ingredient of recipe r" per env up to date from the (env, item) counts each step changes
(a count of ingredients lacking, moved only where a count crosses a recipe's need), so the
mask costs a few whole-array ops per step, not a scan over 168 recipes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.simon_says import counter_rng, game_facts
from tasks.simon_says.techtree_data import CRAFTING_TABLE, FURNACE, TechTree

NEARBY_SLOTS = 8  # blocks visible after each move
STACK = 64.0  # inventory counts are observed as min(count, 64) / 64
FUEL_UNIT = 4  # fuel is counted in quarters of one smelted item (a stick smelts 0.5)
_LOOKUP_BITS = 12  # block draws: a 4096-entry table per level indexed by random bits

# action kinds
EXPLORE, DESCEND, ASCEND, MINE, PLACE, CRAFT, SMELT, NOOP = range(8)
# random streams (independent draws from each env's counter-based stream)
_STREAM_VIEW, _STREAM_DROP = 1, 2


@dataclass(frozen=True)
class ObservationLayout:
    """Column ranges of the flat observation vector."""

    task: slice
    inventory: slice
    nearby: slice
    stations: slice  # [crafting table nearby, furnace nearby]
    level: slice
    time_left: slice
    size: int


def _layout(num_tasks: int, num_items: int, num_blocks: int) -> ObservationLayout:
    edges = np.cumsum([0, num_tasks, num_items, num_blocks, 2, len(game_facts.LEVELS), 1])
    s = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    return ObservationLayout(*s, size=int(edges[-1]))


class TechTreeCore:
    """All sub-env state as arrays, with vectorised ``reset_envs`` and ``step``."""

    def __init__(self, tree: TechTree, task_item_index: np.ndarray, num_envs: int, horizon: int,
                 action_mask: bool = False) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.tree = tree
        self.num_envs = n = int(num_envs)
        self.horizon = int(horizon)
        self.task_item_index = np.asarray(task_item_index, dtype=np.int64)
        items = tree.item_index()
        self.num_items = ni = len(tree.item_names)
        self._width = ni + 1  # one always-zero padding column (index ni) for ragged tables
        blocks = tree.blocks
        self.num_blocks = nb = len(blocks)
        self.layout = _layout(len(self.task_item_index), ni, nb)
        self._build_action_tables(items)
        self._build_world_tables(items)

        self.inventory = np.zeros((n, self._width), dtype=np.int32)
        self.ever = np.zeros((n, self._width), dtype=bool)  # items obtained this episode
        self.nearby = np.zeros((n, nb), dtype=np.int8)
        self.level = np.zeros(n, dtype=np.int8)
        self.table = np.zeros(n, dtype=bool)
        self.furnace = np.zeros(n, dtype=bool)
        self.fuel = np.zeros(n, dtype=np.int32)
        self.caps = np.ones(n, dtype=np.uint16)  # tool-capability bits of the tools held
        self.t = np.zeros(n, dtype=np.int32)
        self.task = np.zeros(n, dtype=np.int64)
        self.goal = np.zeros(n, dtype=np.int64)
        self.keys = counter_rng.env_keys(0, n)
        self.counters = np.zeros(n, dtype=np.uint64)
        self.obs = np.zeros((n, self.layout.size), dtype=np.float32)
        # [env, recipe]: holds every ingredient (kept current only when the mask is on), from
        # how many ingredients each recipe lacks and the inventory counts that count was taken at
        self.has_ingredients: np.ndarray | None = None
        if action_mask:
            self.has_ingredients = np.zeros((n, len(tree.recipes)), dtype=bool)
            self.missing = np.zeros((n, len(tree.recipes)), dtype=np.int8)
            self.counted = np.zeros((n, self._width), dtype=np.int32)
            self._stamp = np.zeros(n * self._width, dtype=np.int64)  # scratch: de-duplicates changes

    # ----------------------------------------------------------------- tables
    def _build_action_tables(self, items: dict[str, int]) -> None:
        tree, pad = self.tree, self.num_items
        names = ["explore", "descend", "ascend"]
        kinds = [EXPLORE, DESCEND, ASCEND]
        args = [0, 0, 0]
        for b, blk in enumerate(tree.blocks):
            names.append(f"mine:{blk.name}"); kinds.append(MINE); args.append(b)
        for station in (CRAFTING_TABLE, FURNACE):
            names.append(f"place:{station}"); kinds.append(PLACE); args.append(items[station])
        for r, rec in enumerate(tree.recipes):
            names.append(f"craft:{rec.name}"); kinds.append(CRAFT); args.append(r)
        for s, (src, _, _) in enumerate(tree.smelting):
            names.append(f"smelt:{src}"); kinds.append(SMELT); args.append(s)
        self.action_names = tuple(names)
        self.table_item = items[CRAFTING_TABLE]
        # one extra NOOP action id (len(names)) used internally for envs that are resetting
        self.action_kind = np.array(kinds + [NOOP], dtype=np.int8)
        self.action_arg = np.array(args + [0], dtype=np.int64)

        width = max(len(r.ingredients) for r in tree.recipes)
        self.recipe_items = np.full((len(tree.recipes), width), pad, dtype=np.int64)
        self.recipe_counts = np.zeros((len(tree.recipes), width), dtype=np.int32)
        for r, rec in enumerate(tree.recipes):
            # deepest ingredient first: the step checks it alone before the rest, and it is
            # the one most often missing
            for j, (name, count) in enumerate(sorted(rec.ingredients, key=lambda x: -tree.depth[x[0]])):
                self.recipe_items[r, j], self.recipe_counts[r, j] = items[name], count
        self.recipe_result = np.array([items[r.result] for r in tree.recipes], dtype=np.int64)
        self.recipe_yield = np.array([r.count for r in tree.recipes], dtype=np.int32)
        self.recipe_table = np.array([r.needs_table for r in tree.recipes], dtype=bool)
        self.smelt_in = np.array([items[i] for i, _, _ in tree.smelting], dtype=np.int64)
        self.smelt_out = np.array([items[o] for _, o, _ in tree.smelting], dtype=np.int64)
        self.smelt_yield = np.array([c for _, _, c in tree.smelting], dtype=np.int32)
        self.fuel_items = np.array([items[f] for f, _ in tree.fuels], dtype=np.int64)
        self.fuel_value = np.array([round(v * FUEL_UNIT) for _, v in tree.fuels], dtype=np.int32)

        # Tool capabilities as bits: bit 0 = bare hands (always), bit j = "holds one of
        # tool set j" for each distinct harvestTools set (and "any pickaxe" for digging down).
        tool_sets = sorted({blk.harvest_tools for blk in tree.blocks if blk.harvest_tools} | {tree.pickaxes},
                           key=sorted)
        if len(tool_sets) > 15:
            raise ValueError("more than 15 distinct tool sets; widen the capability bitmask")
        tools = sorted(set().union(*tool_sets) & set(items))
        self.tool_items = np.array([items[t] for t in tools], dtype=np.int64)
        self.tool_bits = np.array(
            [sum(1 << (j + 1) for j, ts in enumerate(tool_sets) if t in ts) for t in tools], dtype=np.uint16)
        self.block_needs = np.array(
            [1 << (tool_sets.index(blk.harvest_tools) + 1) if blk.harvest_tools else 1 for blk in tree.blocks],
            dtype=np.uint16)
        self.pickaxe_bit = np.uint16(1 << (tool_sets.index(tree.pickaxes) + 1))
        # recipes after which the held tools may differ (a tool made or used up)
        tool_set = set(tools)
        self.recipe_touches_tool = np.array(
            [rec.result in tool_set or any(n in tool_set for n, _ in rec.ingredients) for rec in tree.recipes])
        self._build_mask_tables()

    def _build_mask_tables(self) -> None:
        """Action-id ranges per kind and item -> recipes using it (CSR), for ``action_mask``."""
        kinds = self.action_kind[:-1]
        # action_mask concatenates one block per kind in this order
        if not (np.diff(kinds) >= 0).all() or list(kinds[:3]) != [EXPLORE, DESCEND, ASCEND]:
            raise AssertionError("actions must be ordered explore, descend, ascend, mine, place, craft, smelt")
        self.kind_actions: dict[int, slice] = {}
        for k in (MINE, PLACE, CRAFT, SMELT):
            ids = np.flatnonzero(kinds == k)
            self.kind_actions[k] = slice(int(ids[0]), int(ids[-1]) + 1) if ids.size else slice(0, 0)
        self.place_items = self.action_arg[self.kind_actions[PLACE]]
        self.place_is_table = self.place_items == self.table_item
        # ingredient "features" (item, count needed): item -> its features -> recipes needing them
        uses = sorted({(int(i), int(c), r) for r, (row, cnt) in enumerate(zip(self.recipe_items, self.recipe_counts))
                       for i, c in zip(row, cnt) if i < self.num_items and c > 0})
        features = sorted({(i, c) for i, c, _ in uses})
        fid = {f: k for k, f in enumerate(features)}
        self.feature_need = np.array([c for _, c in features], dtype=np.int32)
        self.item_feature_ptr = np.concatenate(
            ([0], np.cumsum(np.bincount([i for i, _ in features], minlength=self._width))))
        self.item_feature = np.arange(len(features), dtype=np.int64)  # features are sorted by item
        feature_of = np.array([fid[(i, c)] for i, c, _ in uses], dtype=np.int64)
        order = np.argsort(feature_of, kind="stable")
        self.feature_recipe_ptr = np.concatenate(([0], np.cumsum(np.bincount(feature_of, minlength=len(features)))))
        self.feature_recipe = np.array([r for _, _, r in uses], dtype=np.int64)[order]
        # ingredients an empty inventory lacks, per recipe (every one: counts are >= 1)
        self.recipe_missing_empty = np.bincount([r for _, _, r in uses], minlength=len(self.tree.recipes)).astype(np.int8)
        self.recipe_no_table = ~self.recipe_table
        self.place_station = np.where(self.place_is_table, 0, 1)  # column of [table, furnace]
        # (smelting index, fuel index) where the input is also a fuel: it must be held twice
        same = self.smelt_in[:, None] == self.fuel_items[None, :]
        self.smelt_fuel_input = tuple(np.nonzero(same))
        if (same.sum(axis=1) > 1).any():
            raise AssertionError("a smelting input listed twice as fuel")

    def _build_world_tables(self, items: dict[str, int]) -> None:
        tree, pad = self.tree, self.num_items
        width = max(len(b.drops) for b in tree.blocks)
        self.drop_items = np.full((self.num_blocks, width), pad, dtype=np.int64)
        self.drop_counts = np.zeros((self.num_blocks, width), dtype=np.int32)
        # chance as a threshold on the top 32 random bits (chance 1 -> always below)
        self.drop_threshold = np.zeros((self.num_blocks, width), dtype=np.uint64)
        for b, blk in enumerate(tree.blocks):
            for j, d in enumerate(blk.drops):
                if d.item in items:
                    self.drop_items[b, j], self.drop_counts[b, j] = items[d.item], d.count
                    self.drop_threshold[b, j] = min(round(d.chance * 2**32), 2**32)
        size = 1 << _LOOKUP_BITS
        self.view_table = np.zeros((len(game_facts.LEVELS), size), dtype=np.int64)
        for lv in range(len(game_facts.LEVELS)):
            freq = np.array([blk.frequency[lv] for blk in tree.blocks])
            # largest-remainder allocation of the 4096 table entries to blocks
            share = freq / freq.sum() * size
            counts = np.floor(share).astype(int)
            counts[np.argsort(counts - share)[: size - counts.sum()]] += 1
            self.view_table[lv] = np.repeat(np.arange(self.num_blocks), counts)

    # ----------------------------------------------------------------- state
    def seed(self, seed: int) -> None:
        """Restart every sub-env's random stream (sub-env i gets seed + i)."""
        self.keys = counter_rng.env_keys(seed, self.num_envs)
        self.counters[:] = 0

    def _redraw_view(self, idx: np.ndarray) -> None:
        """Fill the nearby blocks of envs ``idx`` from their level's block table."""
        if idx.size == 0:
            return
        words = counter_rng.draws(self.keys[idx], self.counters[idx], _STREAM_VIEW, NEARBY_SLOTS)
        blocks = self.view_table[self.level[idx][:, None], (words >> np.uint64(64 - _LOOKUP_BITS)).astype(np.int64)]
        rows = np.arange(idx.size)[:, None] * self.num_blocks
        counts = np.bincount((rows + blocks).ravel(), minlength=idx.size * self.num_blocks)
        self.nearby[idx] = counts.reshape(idx.size, self.num_blocks)
        self.table[idx] = False
        self.furnace[idx] = False
        self.fuel[idx] = 0
        lay = self.layout
        self.obs[idx, lay.nearby] = self.nearby[idx] * np.float32(1.0 / NEARBY_SLOTS)
        self.obs[idx, lay.stations] = 0.0
        self.obs[idx, lay.level] = 0.0
        self.obs[idx, lay.level.start + self.level[idx].astype(np.int64)] = 1.0

    def reset_envs(self, idx: np.ndarray, tasks: np.ndarray) -> None:
        """Start new episodes in sub-envs ``idx`` with goal tasks ``tasks``."""
        if idx.size == 0:
            return
        self.inventory[idx] = 0
        if self.has_ingredients is not None:
            self.missing[idx] = self.recipe_missing_empty
            self.has_ingredients[idx] = self.recipe_missing_empty == 0
            self.counted[idx] = 0
        self.caps[idx] = 1
        self.ever[idx] = False
        self.level[idx] = 0
        self.t[idx] = 0
        self.task[idx] = tasks
        self.goal[idx] = self.task_item_index[tasks]
        lay = self.layout
        self.obs[idx] = 0.0
        self.obs[idx, lay.task.start + tasks] = 1.0
        self.obs[idx, lay.time_left] = 1.0
        self._redraw_view(idx)
        self.counters[idx] += np.uint64(1)

    # ----------------------------------------------------------------- step
    def step(self, actions: np.ndarray, resetting: np.ndarray | None = None):
        """Apply ``actions`` (one per env); envs flagged ``resetting`` do nothing.

        Returns ``(reward, terminated, truncated, success, items_obtained)``.
        """
        n, ni, width = self.num_envs, self.num_items, self._width
        act = np.asarray(actions, dtype=np.int64).reshape(n)
        if act.size and (act.min() < 0 or act.max() >= len(self.action_names)):
            bad = act[(act < 0) | (act >= len(self.action_names))][0]
            raise ValueError(f"action {bad} out of range: expected 0..{len(self.action_names) - 1}")
        if resetting is not None:
            act = np.where(resetting, len(self.action_names), act)
        kind = self.action_kind[act]
        arg = self.action_arg[act]
        # envs grouped by action kind with one counting sort instead of a scan per kind
        order = np.argsort(kind, kind="stable")
        bounds = np.cumsum(np.bincount(kind, minlength=NOOP + 1))
        by_kind = np.split(order, bounds[:-1])
        inv = self.inventory.reshape(-1)
        gained_env: list[np.ndarray] = []
        gained_item: list[np.ndarray] = []
        changed_env: list[np.ndarray] = []
        changed_item: list[np.ndarray] = []

        # --- craft: all ingredients present (and a table nearby for 3x3 recipes)
        idx = by_kind[CRAFT]
        if idx.size:
            r = arg[idx]
            # cheap filters first (table, deepest ingredient): most attempts fail on them
            ok = (self.table[idx] | ~self.recipe_table[r]) & (
                inv[idx * width + self.recipe_items[r, 0]] >= self.recipe_counts[r, 0])
            idx, r = idx[ok], r[ok]
            pos = idx[:, None] * width + self.recipe_items[r]
            need = self.recipe_counts[r]
            ok = (inv[pos] >= need).all(axis=1)
            if ok.any():
                idx, r, pos, need = idx[ok], r[ok], pos[ok], need[ok]
                inv[pos] -= need
                out = self.recipe_result[r]
                inv[idx * width + out] += self.recipe_yield[r]
                gained_env.append(idx); gained_item.append(out)
                changed_env.append(np.repeat(idx, pos.shape[1])); changed_item.append(self.recipe_items[r].ravel())
                touched = idx[self.recipe_touches_tool[r]]
                if touched.size:
                    self.caps[touched] = self._capabilities(touched)

        # --- mine: a block of that type nearby, and a tool that can harvest it
        idx = by_kind[MINE]
        if idx.size:
            b = arg[idx]
            vpos = idx * self.num_blocks + b
            ok = self.nearby.reshape(-1)[vpos] > 0
            ok &= (self.caps[idx] & self.block_needs[b]) != 0
            if ok.any():
                idx, b, vpos = idx[ok], b[ok], vpos[ok]
                self.nearby.reshape(-1)[vpos] -= 1
                self.obs[idx, self.layout.nearby.start + b] = self.nearby.reshape(-1)[vpos] * np.float32(
                    1.0 / NEARBY_SLOTS)
                words = counter_rng.draws(self.keys[idx], self.counters[idx], _STREAM_DROP, self.drop_items.shape[1])
                hit = (words >> np.uint64(32)) < self.drop_threshold[b]
                count = np.where(hit, self.drop_counts[b], 0)
                items = self.drop_items[b]
                rows = np.repeat(idx, items.shape[1])
                flat_items, flat_count = items.ravel(), count.ravel()
                inv[rows * width + flat_items] += flat_count  # drops of one block are distinct items
                got = flat_count > 0
                gained_env.append(rows[got]); gained_item.append(flat_items[got])

        # --- smelt: furnace nearby, the input, and fuel left or a fuel item to burn
        idx = by_kind[SMELT]
        if idx.size:
            s = arg[idx]
            ok = self.furnace[idx] & (inv[idx * width + self.smelt_in[s]] > 0)
            # a fuel that is also the input (a log smelted into charcoal) must be there twice
            has_fuel = inv[idx[:, None] * width + self.fuel_items] > (self.fuel_items == self.smelt_in[s][:, None])
            first = has_fuel.argmax(axis=1)
            need_burn = self.fuel[idx] < FUEL_UNIT
            ok &= ~need_burn | has_fuel.any(axis=1)
            if ok.any():
                idx, s, first, need_burn = idx[ok], s[ok], first[ok], need_burn[ok]
                burn_env, burn_item = idx[need_burn], self.fuel_items[first[need_burn]]
                inv[burn_env * width + burn_item] -= 1
                self.fuel[burn_env] += self.fuel_value[first[need_burn]]
                self.fuel[idx] -= FUEL_UNIT
                inv[idx * width + self.smelt_in[s]] -= 1
                out = self.smelt_out[s]
                inv[idx * width + out] += self.smelt_yield[s]
                gained_env.append(idx); gained_item.append(out)
                changed_env += [burn_env, idx]; changed_item += [burn_item, self.smelt_in[s]]

        # --- place a crafting table / furnace from the inventory
        idx = by_kind[PLACE]
        if idx.size:
            item = arg[idx]
            is_table = item == self.table_item
            already = np.where(is_table, self.table[idx], self.furnace[idx])
            ok = (inv[idx * width + item] > 0) & ~already
            if ok.any():
                idx, item, is_table = idx[ok], item[ok], is_table[ok]
                inv[idx * width + item] -= 1
                self.table[idx[is_table]] = True
                self.furnace[idx[~is_table]] = True
                self.obs[idx, self.layout.stations.start + (~is_table).astype(np.int64)] = 1.0
                changed_env.append(idx); changed_item.append(item)

        # --- move: explore (same level), descend (needs a pickaxe), ascend
        moved = [by_kind[EXPLORE]]
        idx = by_kind[DESCEND]
        if idx.size:
            idx = idx[(self.level[idx] < len(game_facts.LEVELS) - 1) & ((self.caps[idx] & self.pickaxe_bit) != 0)]
            self.level[idx] += 1
            moved.append(idx)
        idx = by_kind[ASCEND]
        if idx.size:
            idx = idx[self.level[idx] > 0]
            self.level[idx] -= 1
            moved.append(idx)
        self._redraw_view(np.concatenate(moved) if len(moved) > 1 else moved[0])

        # --- bookkeeping: first-time items, success, observation of changed counts
        obtained = np.zeros((n, ni), dtype=bool)
        success = np.zeros(n, dtype=bool)
        if gained_env:
            genv = np.concatenate(gained_env)
            gitem = np.concatenate(gained_item)
            gpos = genv * width + gitem
            ever = self.ever.reshape(-1)
            new = ~ever[gpos]
            genv, gitem = genv[new], gitem[new]
            ever[gpos[new]] = True
            obtained.reshape(-1)[genv * ni + gitem] = True
            success[genv[gitem == self.goal[genv]]] = True
            changed_env.append(genv); changed_item.append(gitem)
            changed_env += gained_env; changed_item += gained_item
        if changed_env:
            cenv = np.concatenate(changed_env)
            citem = np.concatenate(changed_item)
            keep = citem < ni
            cenv, citem = cenv[keep], citem[keep]
            counts = inv[cenv * width + citem]
            self.obs.reshape(-1)[cenv * self.layout.size + self.layout.inventory.start + citem] = (
                np.minimum(counts, STACK) * np.float32(1.0 / STACK))
            if self.has_ingredients is not None:
                self._refresh_ingredients(cenv, citem)

        active = kind != NOOP
        self.t += active
        self.counters += active.astype(np.uint64)
        # (horizon - t) / horizon is exactly 0 at the horizon (1 - t/horizon can dip below 0)
        self.obs[:, self.layout.time_left.start] = np.maximum(self.horizon - self.t, 0) * np.float32(1.0 / self.horizon)
        terminated = success.copy()  # not the same array object as info["success"]
        truncated = active & (self.t >= self.horizon) & ~terminated
        reward = success.astype(np.float32)
        return reward, terminated, truncated, success, obtained

    # ----------------------------------------------------------------- action mask
    def all_ingredients_ok(self) -> np.ndarray:
        """``[env, recipe]`` holds every ingredient, computed from scratch (what the cache tracks)."""
        return (self.inventory[:, self.recipe_items] >= self.recipe_counts).all(axis=2)

    def _refresh_ingredients(self, env: np.ndarray, item: np.ndarray) -> None:
        """Update ``has_ingredients`` after the counts of (env, item) pairs changed: only the
        recipes whose need of that item the new count crosses (4 -> 3 planks: the recipes
        needing 4) move, by one ingredient lacking more or less."""
        flat = env * self._width + item
        # one entry per distinct (env, item): whichever position the scratch kept
        self._stamp[flat] = np.arange(flat.size)
        flat = flat[self._stamp[flat] == np.arange(flat.size)]
        counted = self.counted.reshape(-1)
        old, new = counted[flat], self.inventory.reshape(-1)[flat]
        counted[flat] = new
        env, item = np.divmod(flat, self._width)
        fenv, feature, k = self._expand(env, self.item_feature_ptr, self.item_feature, item)
        if feature.size == 0:
            return
        need = self.feature_need[feature]
        delta = (old[k] >= need).astype(np.int8) - (new[k] >= need)  # +1: now lacking, -1: now held
        flip = delta != 0
        if not flip.any():
            return
        renv, recipe, k = self._expand(fenv[flip], self.feature_recipe_ptr, self.feature_recipe, feature[flip])
        np.add.at(self.missing, (renv, recipe), delta[flip][k])
        self.has_ingredients[renv, recipe] = self.missing[renv, recipe] == 0

    @staticmethod
    def _expand(rows: np.ndarray, ptr: np.ndarray, values: np.ndarray, keys: np.ndarray):
        """CSR fan-out: for each (rows[k], keys[k]) one entry per value of ``keys[k]``;
        returns (rows, values, index k of the source pair) per entry."""
        start = ptr[keys]
        count = ptr[keys + 1] - start
        total = int(count.sum())
        src = np.repeat(np.arange(keys.size), count)
        pos = np.arange(total) - np.repeat(np.cumsum(count) - count, count) + start[src]
        return rows[src], values[pos], src

    def action_mask(self, out: np.ndarray | None = None) -> np.ndarray:
        """``[num_envs, num_actions]`` float32: 1 where the action would change the state now.

        Exactly the preconditions ``step`` tests, so a 0 action is a no-op (only time passes)
        and a 1 action does something; ``explore`` (action 0) is always 1. Writes into ``out``
        when given.
        """
        inv, level, caps = self.inventory, self.level, self.caps
        has = self.has_ingredients if self.has_ingredients is not None else self.all_ingredients_ok()
        # each kind's block as a contiguous (n, k) bool array, then one concatenate to float32
        explore = np.ones((self.num_envs, 1), dtype=bool)
        descend = ((level < len(game_facts.LEVELS) - 1) & ((caps & self.pickaxe_bit) != 0))[:, None]
        ascend = (level > 0)[:, None]
        mine = (self.nearby > 0) & ((caps[:, None] & self.block_needs) != 0)
        placed = np.stack((self.table, self.furnace), axis=1)[:, self.place_station]
        place = (inv[:, self.place_items] > 0) & ~placed  # held, and none placed here
        craft = has & (self.table[:, None] | self.recipe_no_table)
        # fuel: enough left, or a fuel item to burn (held twice when it is also the input)
        held = inv[:, self.fuel_items]
        kinds_held = np.count_nonzero(held, axis=1)
        left = self.fuel >= FUEL_UNIT
        fuel = np.repeat((left | (kinds_held > 0))[:, None], len(self.smelt_in), axis=1)
        s, j = self.smelt_fuel_input
        if s.size:
            fuel[:, s] = left[:, None] | (kinds_held[:, None] - (held[:, j] > 0) + (held[:, j] > 1) > 0)
        smelt = self.furnace[:, None] & (inv[:, self.smelt_in] > 0) & fuel
        parts = (explore, descend, ascend, mine, place, craft, smelt)
        if out is None:
            return np.concatenate(parts, axis=1, dtype=np.float32)
        return np.concatenate(parts, axis=1, out=out)

    def _capabilities(self, idx: np.ndarray) -> np.ndarray:
        """Tool-capability bitmask of envs ``idx`` from the tools they hold (bit 0: hands)."""
        held = self.inventory.reshape(-1)[idx[:, None] * self._width + self.tool_items] > 0
        return np.bitwise_or.reduce(np.where(held, self.tool_bits, np.uint16(0)), axis=1) | np.uint16(1)
