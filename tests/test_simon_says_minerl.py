"""MineRL adapter: pure functions on observations written in MineRL 0.4.4's documented format.

The live MineRL environment (Java 8 + a Minecraft build) is not exercised here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tasks.simon_says import MissingExtraError, SimonSaysEnv, SimonSaysVectorEnv, make_task_space
from tasks.simon_says.minerl_backend import (
    inventory_vector,
    is_done,
    observation_vector,
    step_outcome,
)
from tasks.simon_says.techtree_data import load_tech_tree

ITEMS = load_tech_tree().item_names
# MineRLObtainDiamond-v0's inventory keys (MineRL 0.4.4 docs, "MineRLObtainDiamond-v0")
OBTAIN_DIAMOND_KEYS = ("coal", "cobblestone", "crafting_table", "dirt", "furnace", "iron_axe", "iron_ingot",
                       "iron_ore", "iron_pickaxe", "log", "planks", "stick", "stone", "stone_axe",
                       "stone_pickaxe", "torch", "wooden_axe", "wooden_pickaxe")


def minerl_obs(**counts: int) -> dict:
    """An observation as MineRL 0.4.4 returns it: numpy 0-d arrays in the inventory dict."""
    inventory = {k: np.array(0) for k in OBTAIN_DIAMOND_KEYS}
    inventory.update({k: np.array(v) for k, v in counts.items()})
    return {
        "pov": np.full((64, 64, 3), 255, dtype=np.uint8),
        "inventory": inventory,
        "equipped_items": {"mainhand": {"type": "none", "damage": np.array(0), "maxDamage": np.array(0)}},
    }


def test_minerl_inventory_names_are_in_the_techtree_vocabulary():
    assert set(OBTAIN_DIAMOND_KEYS) <= set(ITEMS)  # both are Minecraft 1.11 names


def test_inventory_vector_reads_counts_by_name():
    inv = inventory_vector(minerl_obs(log=3, planks=8, wooden_pickaxe=1), ITEMS)
    assert inv.dtype == np.int64 and inv.shape == (len(ITEMS),)
    assert inv[ITEMS.index("log")] == 3 and inv[ITEMS.index("planks")] == 8
    assert inv.sum() == 12
    # names MineRL reports that are not items here (e.g. "air") are ignored
    obs = minerl_obs(log=1)
    obs["inventory"]["air"] = np.array(5)
    assert inventory_vector(obs, ITEMS).sum() == 1
    with pytest.raises(KeyError, match="no 'inventory' field"):
        inventory_vector({"pov": obs["pov"]}, ITEMS)


def test_reward_and_items_obtained_follow_first_time_held():
    goal = ITEMS.index("stone_pickaxe")
    ever = np.zeros(len(ITEMS), dtype=bool)
    out = step_outcome(inventory_vector(minerl_obs(log=1), ITEMS), ever, goal)
    assert out.reward == 0.0 and not out.success
    assert np.flatnonzero(out.items_obtained).tolist() == [ITEMS.index("log")]
    # logs crafted away, planks appear: planks are new, log is not new again later
    out = step_outcome(inventory_vector(minerl_obs(planks=4), ITEMS), out.ever, goal)
    assert np.flatnonzero(out.items_obtained).tolist() == [ITEMS.index("planks")]
    out = step_outcome(inventory_vector(minerl_obs(log=2, stone_pickaxe=1), ITEMS), out.ever, goal)
    assert out.success and out.reward == 1.0
    assert np.flatnonzero(out.items_obtained).tolist() == [ITEMS.index("stone_pickaxe")]


def test_done_rules():
    assert is_done(True, False, 3, 300) == (True, False)
    assert is_done(False, True, 3, 300) == (True, False)  # MineRL ended the episode (death)
    assert is_done(False, False, 300, 300) == (False, True)
    assert is_done(False, False, 299, 300) == (False, False)


def test_observation_vector_layout():
    obs = minerl_obs(cobblestone=100)
    vec = observation_vector(obs, task=2, num_tasks=5, inventory=inventory_vector(obs, ITEMS), t=30, horizon=300)
    assert vec.dtype == np.float32 and vec.shape == (5 + len(ITEMS) + 64 * 64 * 3 + 1,)
    assert vec[:5].tolist() == [0, 0, 1, 0, 0]
    assert vec[5 + ITEMS.index("cobblestone")] == 1.0  # clipped at a stack of 64
    assert np.all(vec[5 + len(ITEMS):-1] == 1.0)  # white pixels
    assert vec[-1] == pytest.approx(0.9)
    bad = dict(obs, pov=np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="'pov'"):
        observation_vector(bad, 0, 5, np.zeros(len(ITEMS), dtype=np.int64), 0, 300)


def test_minerl_task_space_is_the_techtree_vocabulary():
    assert make_task_space(backend="minerl") == make_task_space()


@pytest.mark.skipif(importlib.util.find_spec("minerl") is not None,
                    reason="minerl is installed; this checks the error shown without it")
def test_live_env_without_minerl_names_the_extra():
    with pytest.raises(MissingExtraError, match=r"pip install 'mto\[minerl\]'.*Java 8"):
        SimonSaysEnv(backend="minerl")
    with pytest.raises(MissingExtraError, match=r"mto\[minerl\]"):
        SimonSaysVectorEnv(num_envs=2, backend="minerl")
