"""The few Minecraft 1.11 facts that minecraft-data does not carry, as small cited tables.

Everything else (items, crafting recipes, block drops, which tools harvest a block) is
derived from ``minecraft_data("1.11")`` in :mod:`tasks.simon_says.techtree_data`.

Sources (Minecraft Wiki, Java Edition, pages as of the 1.11 "Exploration Update"):
  * Smelting: https://minecraft.wiki/w/Smelting (recipes list, "Java Edition 1.11")
  * Fuel:     https://minecraft.wiki/w/Smelting#Fuel (items smelted per fuel item)
  * Ores:     https://minecraft.wiki/w/Ore#Availability (pre-1.13 height ranges and veins
              per chunk: coal 0-127 / 20, iron 0-63 / 20, gold 0-31 / 2, redstone 0-15 / 8,
              diamond 0-15 / 1, lapis 0-31 / 1, emerald 4-31 / 3-8 single ores, Extreme Hills)
  * Drops:    https://minecraft.wiki/w/Leaves#Drops (sapling 1/20, apple 1/200 from oak),
              https://minecraft.wiki/w/Gravel#Drops (flint 10%),
              https://minecraft.wiki/w/Grass#Drops (wheat seeds 1/8 from tall grass)

The block frequencies are *exposure rates* for this symbolic game: how often a block is
among the few blocks the player sees after moving on, at three levels (surface y~64,
underground y~40-63 and deep y~5-16). They keep the wiki's ordering and height ranges
(e.g. diamond, redstone only deep; gold and lapis from y<32) with values scaled so that
an explorer finds logs within seconds and diamonds only after many moves underground;
they are not measured from generated worlds.
"""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("surface", "underground", "deep")

# Relative frequency of each world block per level (normalised per level when used).
BLOCK_FREQUENCY: dict[str, dict[str, float]] = {
    "surface": {
        "grass": 30.0,
        "dirt": 8.0,
        "log": 16.0,
        "leaves": 14.0,
        "tallgrass": 8.0,
        "sand": 5.0,
        "gravel": 2.0,
        "stone": 4.0,
        "coal_ore": 1.0,
        "clay": 1.0,
        "yellow_flower": 1.0,
        "red_flower": 1.0,
        "reeds": 1.0,
        "pumpkin": 0.3,
        "melon_block": 0.2,
        "cactus": 0.5,
        "vine": 1.0,
        "waterlily": 0.5,
        "brown_mushroom": 0.3,
        "red_mushroom": 0.3,
        "deadbush": 0.3,
        "snow_layer": 0.5,
        "web": 0.1,  # abandoned mineshafts opening at the surface
        "wheat": 0.3,  # grown crops on village farms (found, not farmed)
        "cocoa": 0.2,  # cocoa pods on jungle trees
    },
    "underground": {
        "stone": 60.0,
        "dirt": 6.0,
        "gravel": 5.0,
        "coal_ore": 8.0,
        "iron_ore": 5.0,
        "lapis_ore": 0.3,
        "gold_ore": 0.3,
        "web": 0.5,
    },
    "deep": {
        "stone": 60.0,
        "gravel": 4.0,
        "coal_ore": 4.0,
        "iron_ore": 5.0,
        "gold_ore": 1.5,
        "lapis_ore": 0.8,
        "redstone_ore": 3.0,
        "diamond_ore": 0.6,
        "obsidian": 0.8,  # lava meeting water in deep caves
        "emerald_ore": 0.1,
    },
}

# Drops that happen only sometimes (minecraft-data gives min 0 / max 1 without the chance).
DROP_CHANCE: dict[tuple[str, str], float] = {
    ("leaves", "sapling"): 1 / 20,
    ("leaves", "apple"): 1 / 200,
    ("tallgrass", "wheat_seeds"): 1 / 8,
    ("gravel", "flint"): 1 / 10,
}

# Extra drops missing from minecraft-data 1.11 (gravel's flint is not listed there).
EXTRA_DROPS: dict[str, tuple[tuple[str, int], ...]] = {"gravel": (("flint", 1),)}

# Furnace recipes: input item -> (output item, count). Smelting ores themselves needs silk
# touch to hold the ore block, so only ores that drop themselves (iron, gold) are listed.
# Charcoal (coal:1) is counted as coal, as MineRL's inventory reports it.
SMELTING: dict[str, tuple[str, int]] = {
    "iron_ore": ("iron_ingot", 1),
    "gold_ore": ("gold_ingot", 1),
    "cobblestone": ("stone", 1),
    "sand": ("glass", 1),
    "log": ("coal", 1),
    "clay_ball": ("brick", 1),
    "clay": ("hardened_clay", 1),
    "cactus": ("cactus_green", 1),
}

# Fuel: items smelted per fuel item. The furnace burns the first one present, in this order.
FUEL_ITEMS_SMELTED: dict[str, float] = {
    "coal": 8.0,
    "planks": 1.5,
    "log": 1.5,
    "stick": 0.5,
    "sapling": 0.5,
    "wooden_slab": 0.75,
    "coal_block": 80.0,
}

# Known errors in minecraft-data 1.11's recipes, corrected: result -> ingredient to drop.
# Its boat recipe has item 269 (wooden shovel) in the middle of the U of planks; the game's
# boat is five planks alone (https://minecraft.wiki/w/Boat#Crafting).
RECIPE_ERRATA: dict[str, str] = {"boat": "wooden_shovel"}

# Sources the symbolic game does not model: items from them are not tasks.
# (mobs: combat, milk, eggs, leather; villagers: trading; farming: planting and waiting for
# crops (grown wheat found on village farms is modelled); Nether and End; chest loot;
# silk touch.)
EXCLUDED_SOURCES: tuple[str, ...] = (
    "combat and other mobs", "trading", "farming", "the Nether", "the End",
    "chest loot", "silk touch",
)
