"""The Minecraft 1.11 tech tree, derived from minecraft-data plus :mod:`game_facts`.

``load_tech_tree()`` reads ``minecraft_data("1.11")`` (the game version MineRL 0.4.4 runs)
and returns a :class:`TechTree`: the item vocabulary, crafting recipes (2x2 in the
inventory, 3x3 at a crafting table), what each world block drops and which tools harvest
it, furnace recipes and fuels, and from those, by a fixed point, the set of items that a
player can obtain from an overworld spawn without combat, trading, farming, the Nether or
the End, with each item's prerequisite depth.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from tasks.simon_says import game_facts

DATA_VERSION = "1.11"
CRAFTING_TABLE = "crafting_table"
FURNACE = "furnace"
DYE_ID = 351  # metadata variants of dye are distinct items (lapis lazuli, rose red, ...)
STONE_SLAB_ID = 44  # so are slab variants (a quartz slab needs Nether quartz, a stone slab not)
COAL_ID = 263  # charcoal (coal:1) is merged into coal


@dataclass(frozen=True)
class Recipe:
    """A crafting recipe: consumes ``ingredients`` (item -> count), yields ``count`` x ``result``."""

    result: str
    count: int
    ingredients: tuple[tuple[str, int], ...]
    needs_table: bool  # a 3x3 grid: the recipe needs a crafting table nearby

    @property
    def name(self) -> str:
        """Readable id, e.g. ``planks<-log``."""
        return f"{self.result}<-" + "+".join(f"{n}x{c}" if c > 1 else n for n, c in self.ingredients)


@dataclass(frozen=True)
class Drop:
    """An item a mined block yields: ``count`` with probability ``chance``."""

    item: str
    count: int
    chance: float = 1.0


@dataclass(frozen=True)
class WorldBlock:
    """A block found in the world: what it drops and what can harvest it."""

    name: str
    drops: tuple[Drop, ...]
    harvest_tools: frozenset[str]  # empty: any tool or bare hands
    frequency: tuple[float, ...]  # relative frequency per level (game_facts.LEVELS)


@dataclass(frozen=True)
class TechTree:
    """Everything the techtree simulator and the task space need, derived once."""

    item_names: tuple[str, ...]  # the inventory vocabulary (obtainable items, by depth then name)
    depth: dict[str, int]
    prerequisites: dict[str, frozenset[str]]
    recipes: tuple[Recipe, ...]
    blocks: tuple[WorldBlock, ...]
    smelting: tuple[tuple[str, str, int], ...]  # (input, output, count)
    fuels: tuple[tuple[str, float], ...]  # (item, items smelted per fuel item), in burn order
    pickaxes: frozenset[str]  # any of these lets the player dig down a level
    unobtainable: frozenset[str] = field(default_factory=frozenset)  # known items not obtainable

    def item_index(self) -> dict[str, int]:
        """Item name -> column in the inventory vector."""
        return {n: i for i, n in enumerate(self.item_names)}


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class _Names:
    """Maps minecraft-data (id, metadata) to the item names used here."""

    def __init__(self, data) -> None:
        self.by_id: dict[int, str] = {b["id"]: b["name"] for b in data.blocks_list}
        self.by_id.update({i["id"]: i["name"] for i in data.items_list})
        self.dye = {v["metadata"]: _snake(v["displayName"]) for v in data.items[DYE_ID]["variations"]}
        self.slab = {v["metadata"]: _snake(v["displayName"]) for v in data.blocks[STONE_SLAB_ID]["variations"]}
        self.slab[0] = "stone_slab"

    def name(self, spec) -> str | None:
        """``spec`` is an id, ``{"id", "metadata"}`` or None (empty slot)."""
        if spec is None:
            return None
        if isinstance(spec, dict):
            item_id, meta = spec["id"], spec.get("metadata", 0)
        else:
            item_id, meta = spec, None
        if item_id == DYE_ID:
            # A dye slot without metadata would accept any dye; the data only uses it for
            # recipes that are unobtainable here anyway, so it stays a separate unknown item.
            return self.dye.get(meta, "dye") if meta is not None else "dye"
        if item_id == STONE_SLAB_ID and meta is not None:
            return self.slab.get(meta, "stone_slab")
        if item_id == COAL_ID:
            return "coal"
        # A few recipe ids (e.g. 452, the 1.11.1 iron nugget) are missing from the 1.11 item
        # list; they stay unknown, hence unobtainable, rather than guessed.
        return self.by_id.get(item_id, f"unknown_item_{item_id}")


def _parse_recipe(raw: dict, names: _Names) -> Recipe | None:
    if "inShape" in raw:
        rows = raw["inShape"]
        cells = [names.name(c) for row in rows for c in row]
        width = max(len(r) for r in rows)
        needs_table = len(rows) > 2 or width > 2
    else:
        cells = [names.name(c) for c in raw["ingredients"]]
        needs_table = len(cells) > 4
    counts: dict[str, int] = {}
    for c in cells:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    result = names.name(raw["result"])
    counts.pop(game_facts.RECIPE_ERRATA.get(result, ""), None)
    if result in counts or not counts:
        return None  # repairing, re-dyeing, un-crafting into itself: no new item
    return Recipe(result, int(raw["result"]["count"]), tuple(sorted(counts.items())), needs_table)


def _world_blocks(data, names: _Names) -> tuple[WorldBlock, ...]:
    blocks = []
    all_blocks = {name for level in game_facts.BLOCK_FREQUENCY.values() for name in level}
    for name in sorted(all_blocks):
        raw = data.blocks_name[name]
        drops: list[Drop] = []
        for d in raw.get("drops", []):
            item = names.name(d["drop"])
            if any(x.item == item for x in drops):
                continue  # a second, bonus roll of the same item (wheat seeds, cocoa beans)
            lo, hi = d.get("minCount", 1), d.get("maxCount", d.get("minCount", 1))
            chance = game_facts.DROP_CHANCE.get((name, item), 1.0)
            if (name, item) not in game_facts.DROP_CHANCE and lo < 1 <= hi:
                chance = 0.5  # "0 to 1" without a published chance
            drops.append(Drop(item, max(1, round((lo + hi) / 2)), chance))
        for item, count in game_facts.EXTRA_DROPS.get(name, ()):
            drops.append(Drop(item, count, game_facts.DROP_CHANCE.get((name, item), 1.0)))
        tools = frozenset(names.name(int(t)) for t in raw.get("harvestTools", {}))
        freq = tuple(game_facts.BLOCK_FREQUENCY[lv].get(name, 0.0) for lv in game_facts.LEVELS)
        blocks.append(WorldBlock(name, tuple(drops), tools, freq))
    return tuple(blocks)


def _ways(recipes, blocks, pickaxes) -> dict[str, list[frozenset[str]]]:
    """Every way to obtain each item, as the set of items it needs first."""
    ways: dict[str, list[frozenset[str]]] = {}
    for b in blocks:
        surface_only = b.frequency[0] > 0
        tool_options = [frozenset({t}) for t in sorted(b.harvest_tools)] or [frozenset()]
        level_options = [frozenset()] if surface_only else [frozenset({p}) for p in sorted(pickaxes)]
        for d in b.drops:
            for t in tool_options:
                # below the surface the player dug down with a pickaxe; a pickaxe tool covers it
                for lv in [frozenset()] if t & pickaxes else level_options:
                    ways.setdefault(d.item, []).append(t | lv)
    for r in recipes:
        need = frozenset(n for n, _ in r.ingredients) | ({CRAFTING_TABLE} if r.needs_table else set())
        ways.setdefault(r.result, []).append(frozenset(need))
    for src, (out, _) in game_facts.SMELTING.items():
        for fuel in game_facts.FUEL_ITEMS_SMELTED:
            ways.setdefault(out, []).append(frozenset({src, FURNACE, fuel}))
    return ways


def _depths(ways: dict[str, list[frozenset[str]]]) -> tuple[dict[str, int], dict[str, frozenset[str]]]:
    """Bellman-Ford style fixed point: depth = min over ways of 1 + max depth of its needs."""
    depth: dict[str, int] = {}
    best: dict[str, frozenset[str]] = {}
    changed = True
    while changed:
        changed = False
        for item, options in ways.items():
            for need in options:
                if all(n in depth for n in need):
                    d = 1 + max((depth[n] for n in need), default=-1)
                    if d < depth.get(item, 1 << 30):
                        depth[item], best[item] = d, need
                        changed = True
    return depth, best


@functools.lru_cache(maxsize=1)
def load_tech_tree() -> TechTree:
    """Derive the tech tree from minecraft-data 1.11 (cached; takes well under a second)."""
    import minecraft_data  # the module object is callable: minecraft_data("1.11")

    data = minecraft_data(DATA_VERSION)
    names = _Names(data)
    parsed = {r for raws in data.recipes.values() for raw in raws if (r := _parse_recipe(raw, names))}
    blocks = _world_blocks(data, names)
    pickaxes = frozenset(n for n in names.by_id.values() if n.endswith("_pickaxe"))
    depth, best = _depths(_ways(parsed, blocks, pickaxes))
    obtainable = {n for n in depth if not n.startswith("unknown_item_")}
    item_names = tuple(sorted(obtainable, key=lambda n: (depth[n], n)))
    recipes = tuple(sorted(
        (r for r in parsed if r.result in obtainable and all(n in obtainable for n, _ in r.ingredients)
         and (not r.needs_table or CRAFTING_TABLE in obtainable)),
        key=lambda r: (depth[r.result], r.name)))
    smelting = tuple((i, o, c) for i, (o, c) in game_facts.SMELTING.items() if i in obtainable)
    fuels = tuple((f, v) for f, v in game_facts.FUEL_ITEMS_SMELTED.items() if f in obtainable)
    known = set(names.by_id.values()) | set(names.dye.values()) | set(names.slab.values()) | {"charcoal"}
    return TechTree(
        item_names=item_names,
        depth={n: depth[n] for n in item_names},
        prerequisites={n: best[n] for n in item_names},
        recipes=recipes,
        blocks=blocks,
        smelting=smelting,
        fuels=fuels,
        pickaxes=frozenset(p for p in pickaxes if p in obtainable),
        unobtainable=frozenset(known - obtainable - {"air"}),
    )

