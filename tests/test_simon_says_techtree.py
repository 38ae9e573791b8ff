"""The techtree backend's game rules come from minecraft-data 1.11, and the tree is complete.

Known answers are worked out by hand from the game: log -> planks (x4) -> crafting table,
sticks -> wooden pickaxe (3x3, needs the table) -> cobblestone -> stone pickaxe -> iron ore ->
furnace + fuel -> iron ingot -> iron pickaxe -> diamond -> diamond pickaxe.
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks.simon_says import (
    SimonSaysVectorEnv,
    UnknownTaskError,
    UnobtainableItemError,
    make_task_space,
    prerequisites,
)
from tasks.simon_says.scripted import TechTreePlanner, steps_to_obtain
from tasks.simon_says.techtree_data import load_tech_tree


@pytest.fixture(scope="module")
def tree():
    return load_tech_tree()


def _recipe(tree, name):
    return next(r for r in tree.recipes if r.name == name)


def _block(tree, name):
    return next(b for b in tree.blocks if b.name == name)


# ---------------------------------------------------------------- data derived from minecraft-data
def test_harvest_rules_come_from_the_data(tree):
    import minecraft_data

    data = minecraft_data("1.11")
    iron_tools = {data.items[int(i)]["name"] for i in data.blocks_name["iron_ore"]["harvestTools"]}
    assert iron_tools == {"stone_pickaxe", "iron_pickaxe", "diamond_pickaxe"}
    assert _block(tree, "iron_ore").harvest_tools == frozenset(iron_tools)
    assert _block(tree, "diamond_ore").harvest_tools == {"iron_pickaxe", "diamond_pickaxe"}
    assert _block(tree, "obsidian").harvest_tools == {"diamond_pickaxe"}
    assert _block(tree, "log").harvest_tools == frozenset()  # by hand
    # stone drops cobblestone, diamond ore drops a diamond (minecraft-data "drops")
    assert [d.item for d in _block(tree, "stone").drops] == ["cobblestone"]
    assert [d.item for d in _block(tree, "diamond_ore").drops] == ["diamond"]


def test_recipes_come_from_the_data(tree):
    planks = _recipe(tree, "planks<-log")
    assert (planks.count, planks.needs_table) == (4, False)  # 1x1 grid: crafts in the inventory
    pick = _recipe(tree, "wooden_pickaxe<-planksx3+stickx2")
    assert pick.needs_table  # 3x3 grid
    assert _recipe(tree, "crafting_table<-planksx4").needs_table is False  # 2x2
    assert _recipe(tree, "furnace<-cobblestonex8").needs_table
    assert _recipe(tree, "diamond_pickaxe<-diamondx3+stickx2").count == 1
    # repair recipes (two damaged pickaxes -> one) add no item and are dropped
    assert not any(r.result == n for r in tree.recipes for n, _ in r.ingredients)


def test_task_set_is_every_obtainable_item(tree):
    space = make_task_space()
    print(f"\nSimon Says techtree tasks: {len(space)} obtainable items")
    assert 100 <= len(space) <= 250
    for item in ("log", "planks", "crafting_table", "wooden_pickaxe", "iron_ingot", "diamond_pickaxe",
                 "glass", "torch", "bucket", "obsidian", "string", "bow", "bread", "cookie"):
        assert item in space
    # combat, trading, farming, Nether, End
    for item in ("bone", "leather", "ender_pearl", "cake", "blaze_rod",
                 "netherrack", "quartz", "end_stone", "chorus_fruit", "book"):
        assert item not in space
    assert list(space.depth) == sorted(space.depth)  # ordered by depth, then name
    assert space.names == tree.item_names


def test_depths_by_hand():
    space = make_task_space()
    depth = dict(zip(space.names, space.depth))
    # log 0 -> planks 1 -> table 2 -> wooden pickaxe 3 -> cobblestone 4 -> stone pickaxe 5
    # -> iron ore 6 -> iron ingot 7 -> iron pickaxe 8 -> diamond 9 -> diamond pickaxe 10
    expected = {"log": 0, "planks": 1, "crafting_table": 2, "wooden_pickaxe": 3, "cobblestone": 4,
                "stone_pickaxe": 5, "iron_ore": 6, "iron_ingot": 7, "iron_pickaxe": 8, "diamond": 9,
                "diamond_pickaxe": 10, "furnace": 5}
    assert {k: depth[k] for k in expected} == expected


def test_prerequisites():
    pre = prerequisites()
    assert pre["wooden_pickaxe"] == {"planks", "stick", "crafting_table"}
    assert pre["cobblestone"] == {"wooden_pickaxe"}
    assert pre["iron_ore"] == {"stone_pickaxe"}
    assert {"iron_ore", "furnace"} <= pre["iron_ingot"]
    assert pre["log"] == frozenset()
    space = make_task_space()
    assert set(pre) == set(space.names)
    depth = dict(zip(space.names, space.depth))
    assert all(depth[p] < depth[item] for item, ps in pre.items() for p in ps)


def test_unknown_and_unobtainable_items_are_named_with_suggestions():
    with pytest.raises(UnknownTaskError, match=r"unknown item 'diamond_pickax'.*'diamond_pickaxe'"):
        make_task_space(["log", "diamond_pickax"])
    with pytest.raises(UnobtainableItemError, match=r"'ender_pearl'.*cannot be obtained.*combat"):
        make_task_space(["ender_pearl"])
    with pytest.raises(UnobtainableItemError, match=r"'leather'.*did you mean.*'ladder'"):
        SimonSaysVectorEnv(num_envs=2, tasks=["leather"])
    with pytest.raises(ValueError, match=r"backend 'techtre'.*did you mean 'techtree'"):
        make_task_space(backend="techtre")


# ---------------------------------------------------------------- the rules, played
def _env_with(tree_items: dict[str, int], level: int = 0, nearby: dict[str, int] | None = None,
              table: bool = False, furnace: bool = False):
    env = SimonSaysVectorEnv(num_envs=1, tasks=["diamond_pickaxe"])
    env.reset(seed=0)
    core = env.core
    index = env.tree.item_index()
    core.inventory[0] = 0
    for name, count in tree_items.items():
        core.inventory[0, index[name]] = count
    core.caps[0] = core._capabilities(np.array([0]))[0]
    core.level[0] = level
    core.nearby[0] = 0
    for name, count in (nearby or {}).items():
        core.nearby[0, [b.name for b in env.tree.blocks].index(name)] = count
    core.table[0], core.furnace[0] = table, furnace
    return env, index


def _do(env, action_name):
    env.step(np.array([env.action_names.index(action_name)]))


def test_iron_ore_needs_a_stone_pickaxe():
    env, idx = _env_with({"wooden_pickaxe": 1}, level=1, nearby={"iron_ore": 2})
    _do(env, "mine:iron_ore")
    assert env.core.inventory[0, idx["iron_ore"]] == 0  # wooden tier cannot harvest it
    env, idx = _env_with({"stone_pickaxe": 1}, level=1, nearby={"iron_ore": 2})
    _do(env, "mine:iron_ore")
    assert env.core.inventory[0, idx["iron_ore"]] == 1
    assert env.core.nearby[0, [b.name for b in env.tree.blocks].index("iron_ore")] == 1


def test_wooden_pickaxe_needs_a_table_nearby():
    env, idx = _env_with({"planks": 3, "stick": 2})
    _do(env, "craft:wooden_pickaxe<-planksx3+stickx2")
    assert env.core.inventory[0, idx["wooden_pickaxe"]] == 0
    env, idx = _env_with({"planks": 3, "stick": 2, "crafting_table": 1})
    _do(env, "place:crafting_table")
    assert env.core.table[0] and env.core.inventory[0, idx["crafting_table"]] == 0
    _do(env, "craft:wooden_pickaxe<-planksx3+stickx2")
    inv = env.core.inventory[0]
    assert (inv[idx["wooden_pickaxe"]], inv[idx["planks"]], inv[idx["stick"]]) == (1, 0, 0)
    _do(env, "explore")  # walking on leaves the table behind
    assert not env.core.table[0]


def test_smelting_needs_furnace_and_fuel():
    env, idx = _env_with({"iron_ore": 2})
    _do(env, "smelt:iron_ore")
    assert env.core.inventory[0, idx["iron_ingot"]] == 0  # no furnace
    env, idx = _env_with({"iron_ore": 2}, furnace=True)
    _do(env, "smelt:iron_ore")
    assert env.core.inventory[0, idx["iron_ingot"]] == 0  # no fuel
    env, idx = _env_with({"iron_ore": 2, "coal": 1}, furnace=True)
    _do(env, "smelt:iron_ore")
    _do(env, "smelt:iron_ore")
    inv = env.core.inventory[0]
    # one coal smelts 8 items: both ingots from it, and it is burnt once
    assert (inv[idx["iron_ingot"]], inv[idx["iron_ore"]], inv[idx["coal"]]) == (2, 0, 0)


def test_a_log_cannot_be_both_the_fuel_and_the_input():
    env, idx = _env_with({"log": 1}, furnace=True)
    _do(env, "smelt:log")
    inv = env.core.inventory[0]
    assert (inv[idx["log"]], inv[idx["coal"]]) == (1, 0)
    env, idx = _env_with({"log": 2}, furnace=True)
    _do(env, "smelt:log")  # one log burns (1.5 items of heat), the other becomes charcoal (coal)
    inv = env.core.inventory[0]
    assert (inv[idx["log"]], inv[idx["coal"]]) == (0, 1)
    assert (env.core.inventory >= 0).all()


def test_descending_needs_a_pickaxe():
    env, _ = _env_with({})
    _do(env, "descend")
    assert env.core.level[0] == 0
    env, _ = _env_with({"wooden_pickaxe": 1})
    _do(env, "descend")
    assert env.core.level[0] == 1


# ---------------------------------------------------------------- reachability
@pytest.mark.parametrize("seed", range(4))
def test_scripted_policy_obtains_a_diamond_pickaxe(seed):
    env = SimonSaysVectorEnv(num_envs=1, tasks=["diamond_pickaxe"], horizon=300)
    env.reset(seed=seed)
    planner = TechTreePlanner(env.core)
    for _ in range(300):
        _, reward, terminated, truncated, info = env.step(np.array([planner.act(0, "diamond_pickaxe")]))
        if terminated[0] or truncated[0]:
            break
    assert terminated[0] and reward[0] == 1.0 and info["success"][0]


def test_scripted_policy_reaches_the_deepest_tasks():
    space = make_task_space()
    deepest = space.names[-15:] + space.names[::25]  # the 15 deepest items and a spread of the rest
    unreached = [name for name in deepest if steps_to_obtain(name, seed=0, max_steps=6000) is None]
    assert unreached == []


@pytest.mark.slow
def test_scripted_policy_reaches_every_task():
    space = make_task_space()
    unreached = [name for name in space.names if steps_to_obtain(name, seed=0, max_steps=6000) is None]
    assert unreached == []


def test_random_policy_gets_logs_often_and_diamonds_never():
    n = 2048
    env = SimonSaysVectorEnv(num_envs=n, tasks=["diamond_pickaxe"], horizon=300)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    index = env.tree.item_index()
    got = np.zeros((n, len(env.item_names)), dtype=bool)
    for _ in range(300):  # exactly one episode per env
        _, _, _, truncated, info = env.step(rng.integers(0, env.single_action_space.n, size=n))
        got |= info["items_obtained"]
    assert truncated.all()
    assert got[:, index["log"]].mean() > 0.5
    assert got[:, index["diamond"]].sum() == 0
    assert got[:, index["iron_ore"]].sum() == 0
