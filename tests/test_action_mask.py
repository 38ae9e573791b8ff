"""The invalid-action mask: exactly the actions whose preconditions hold, checked by stepping.

Every state is probed by copying it into one probe env per action and stepping all of them
once: a masked action must leave the state as it was, an unmasked one must change it (and,
for mine/craft/place/smelt, the inventory). States come from scripted players climbing to
deep items with random valid and invalid actions mixed in, so inventories, stations, levels
and fuel vary.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies.action_masking import mask_logits
from tasks.simon_says import ENV_ID, SimonSaysEnv, SimonSaysVectorEnv
from tasks.simon_says.scripted import TechTreePlanner
from tasks.simon_says.techtree_env import (
    ASCEND,
    CRAFT,
    DESCEND,
    EXPLORE,
    MINE,
    PLACE,
    SMELT,
    TechTreeCore,
)

GOALS = ("diamond_pickaxe", "glass", "bread", "iron_ingot", "brick", "golden_apple", "furnace", "bow",
         "stone_pickaxe", "cactus_green", "hardened_clay", "torch", "iron_sword", "paper")
STATE = ("inventory", "nearby", "level", "table", "furnace", "fuel", "caps", "ever")


def _reachable_states(num_envs: int = 48, steps: int = 700, seed: int = 0) -> list[TechTreeCore]:
    """Snapshots (one core each) of a vector env whose envs mostly follow the scripted player
    towards deep goals, with random valid and uniformly random actions mixed in."""
    goals = [GOALS[i % len(GOALS)] for i in range(num_envs)]
    env = SimonSaysVectorEnv(num_envs=num_envs, tasks=sorted(set(goals)), horizon=10_000, action_mask=True)
    obs, _ = env.reset(seed=seed, options={"task": [env.task_space.names.index(g) for g in goals]})
    planner = TechTreePlanner(env.core)
    rng = np.random.default_rng(seed)
    snapshots = []
    for t in range(steps):
        mask = obs["action_mask"]
        actions = np.empty(num_envs, dtype=np.int64)
        for i in range(num_envs):
            u = rng.random()
            if u < 0.75:
                actions[i] = planner.act(i, goals[i])
            elif u < 0.92:
                actions[i] = rng.choice(np.flatnonzero(mask[i]))
            else:
                actions[i] = rng.integers(len(env.action_names))
        obs, *_ = env.step(actions)
        if t % 100 == 99:
            snapshots.append(_clone(env.core, np.arange(num_envs), 1))
    return snapshots


def _clone(core: TechTreeCore, rows: np.ndarray, repeat: int) -> TechTreeCore:
    """A new core holding the state of ``core``'s envs ``rows``, each repeated ``repeat`` times.

    Copies every per-env array (first dimension ``num_envs``), so state added to the core
    later is copied too."""
    out = TechTreeCore(core.tree, core.task_item_index, rows.size * repeat, core.horizon,
                       action_mask=core.has_ingredients is not None)
    copied = 0
    for name, value in vars(core).items():
        target = getattr(out, name)
        if isinstance(value, np.ndarray) and isinstance(target, np.ndarray) and \
                value.shape[:1] == (core.num_envs,) and \
                target.shape[:1] == (out.num_envs,):
            setattr(out, name, np.repeat(value[rows], repeat, axis=0))
            copied += 1
    assert copied >= len(STATE)
    return out


def _random_states(num_envs: int = 400, seed: int = 0) -> list[TechTreeCore]:
    """Random states written straight into a core: a few of the items that recipes, furnaces
    and stations use, in counts around the recipes' thresholds (the log that is both fuel and
    smelting input held once or twice, a second table while one is placed ...), random blocks
    nearby, level, stations and fuel (including the negative fuel a stick can leave)."""
    env = SimonSaysVectorEnv(num_envs=num_envs, horizon=10_000, action_mask=True)
    env.reset(seed=seed)
    core, rng = env.core, np.random.default_rng(seed)
    used = np.unique(np.concatenate([core.recipe_items.ravel(), core.fuel_items, core.smelt_in, core.place_items,
                                     core.tool_items]))
    used = used[used < core.num_items]
    for i in range(num_envs):
        items = rng.choice(used, size=rng.integers(2, 14), replace=False)
        core.inventory[i, items] = rng.choice([1, 1, 2, 2, 3, 4, 5, 8, 64], size=items.size)
    core.caps[:] = core._capabilities(np.arange(num_envs))
    core.has_ingredients[:] = core.all_ingredients_ok()
    core.nearby[:] = rng.integers(1, 3, core.nearby.shape) * (rng.random(core.nearby.shape) < 0.3)
    core.level[:] = rng.integers(0, 3, num_envs)
    core.table[:] = rng.random(num_envs) < 0.5
    core.furnace[:] = rng.random(num_envs) < 0.7
    core.fuel[:] = rng.choice([-2, 0, 1, 2, 3, 4, 5, 8, 30], num_envs)
    return [_clone(core, np.arange(num_envs), 1)]


@pytest.fixture(scope="module", params=["reachable", "random"])
def probes(request):
    """(mask, changed, inventory changed, nearby changed, action kinds, a core) for every
    action in every sampled state."""
    masks, changed, inv_changed, nearby_changed = [], [], [], []
    for snap in (_reachable_states() if request.param == "reachable" else _random_states()):
        num_actions = len(snap.action_names)
        assert snap.num_envs * num_actions not in {num_actions, snap.num_items, len(snap.tree.recipes)}
        probe = _clone(snap, np.arange(snap.num_envs), num_actions)
        before = {k: getattr(probe, k).copy() for k in STATE}
        mask = probe.action_mask()
        probe.step(np.tile(np.arange(num_actions), snap.num_envs))
        diff = {k: (getattr(probe, k) != before[k]).reshape(probe.num_envs, -1).any(axis=1) for k in STATE}
        shape = (snap.num_envs, num_actions)
        masks.append(mask[::num_actions])
        changed.append(np.logical_or.reduce(list(diff.values())).reshape(shape))
        inv_changed.append(diff["inventory"].reshape(shape))
        nearby_changed.append(diff["nearby"].reshape(shape))
        # the probe's own mask is the snapshot's, per action copy
        assert (mask.reshape(snap.num_envs, num_actions, -1) == mask[::num_actions][:, None]).all()
    kinds = snap.action_kind[:-1]
    return (np.concatenate(masks).astype(bool), np.concatenate(changed), np.concatenate(inv_changed),
            np.concatenate(nearby_changed), kinds, snap)


def test_states_are_varied(probes):
    mask, _, _, _, kinds, _ = probes
    # every kind of action is valid somewhere and invalid somewhere among the probed states
    for k in (DESCEND, ASCEND, MINE, PLACE, CRAFT, SMELT):
        cols = mask[:, kinds == k]
        assert cols.any() and not cols.all(), k
    assert mask[:, kinds == CRAFT].any(axis=0).sum() >= 15  # many different recipes craftable
    assert mask[:, kinds == SMELT].any(axis=0).sum() >= 3


def test_masked_actions_never_change_the_state(probes):
    mask, changed, _, _, _, core = probes
    bad = np.argwhere(~mask & changed)
    assert bad.size == 0, [core.action_names[a] for a in bad[:10, 1]]


def test_unmasked_actions_always_change_the_state(probes):
    mask, changed, inv_changed, nearby_changed, kinds, core = probes
    assert mask[:, EXPLORE].all()  # always valid: the one action that is never a no-op by rule
    acting = kinds != EXPLORE
    bad = np.argwhere(mask[:, acting] & ~changed[:, acting])
    assert bad.size == 0, [core.action_names[np.flatnonzero(acting)[a]] for a in bad[:10, 1]]
    # mine, craft, place and smelt change the inventory; mining a block whose drops are all
    # chance drops (leaves, tall grass, dead bush) may yield nothing but removes the block
    certain = np.array([any(d.chance >= 1 for d in b.drops) for b in core.tree.blocks])
    needs_inventory = np.isin(kinds, (CRAFT, PLACE, SMELT))
    needs_inventory[kinds == MINE] = certain
    bad = np.argwhere(mask[:, needs_inventory] & ~inv_changed[:, needs_inventory])
    assert bad.size == 0, [core.action_names[np.flatnonzero(needs_inventory)[a]] for a in bad[:10, 1]]
    mine = kinds == MINE
    assert (nearby_changed[:, mine] | ~mask[:, mine]).all()
    assert (mask[:, mine] & ~certain).any()  # chance-drop blocks were mined and stay valid


def test_incremental_ingredient_cache_equals_a_full_recompute():
    env = SimonSaysVectorEnv(num_envs=64, horizon=40, action_mask=True)  # autoresets every 40 steps
    obs, _ = env.reset(seed=3)
    plain = SimonSaysVectorEnv(num_envs=64, horizon=40)  # no cache: recomputes from scratch
    plain.reset(seed=3)
    rng = np.random.default_rng(3)
    planner = TechTreePlanner(env.core)
    for t in range(300):
        mask = obs["action_mask"]
        scripted = np.array([planner.act(i, "stone_pickaxe") for i in range(64)])
        valid = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
        actions = np.where(rng.random(64) < 0.5, scripted, valid)
        obs, *_ = env.step(actions)
        plain_obs, *_ = plain.step(actions)
        np.testing.assert_array_equal(env.core.has_ingredients, env.core.all_ingredients_ok())
        np.testing.assert_array_equal(obs["action_mask"], plain.core.action_mask())
        np.testing.assert_array_equal(obs["observations"], plain_obs)
    assert env.core.inventory.sum() > 0


# ---------------------------------------------------------------- gymnasium surface
def test_dict_observation_space_holds_the_observations_and_the_mask():
    env = SimonSaysVectorEnv(num_envs=5, action_mask=True)
    plain = SimonSaysVectorEnv(num_envs=5)
    num_actions = len(env.action_names)
    assert isinstance(plain.single_observation_space, gym.spaces.Box)  # default unchanged
    space = env.single_observation_space
    assert isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"observations", "action_mask"}
    assert space["observations"] == plain.single_observation_space
    assert space["action_mask"] == gym.spaces.Box(0.0, 1.0, (num_actions,), np.float32)
    assert env.observation_space["action_mask"].shape == (5, num_actions)
    obs, _ = env.reset(seed=7)
    plain_obs, _ = plain.reset(seed=7)
    rng = np.random.default_rng(0)
    for _ in range(30):
        assert env.observation_space.contains(obs)
        assert obs["action_mask"].dtype == np.float32 and set(np.unique(obs["action_mask"])) <= {0.0, 1.0}
        np.testing.assert_array_equal(obs["observations"], plain_obs)
        actions = rng.integers(num_actions, size=5)
        obs, *_ = env.step(actions)
        plain_obs, *_ = plain.step(actions)

    single = gym.make(ENV_ID, action_mask=True)  # with gymnasium's env checker
    obs, _ = single.reset(seed=1)
    assert single.observation_space.contains(obs) and obs["action_mask"].shape == (num_actions,)
    vec = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", action_mask=True)
    obs, _ = vec.reset(seed=1)
    assert vec.single_observation_space == space and obs["action_mask"].shape == (3, num_actions)


def test_copy_false_reuses_buffers_and_copy_true_does_not():
    env = SimonSaysVectorEnv(num_envs=2, action_mask=True, copy=False)
    a, _ = env.reset(seed=0)
    b, *_ = env.step(np.zeros(2, dtype=np.int64))
    assert a["action_mask"] is b["action_mask"] and a["observations"] is b["observations"]
    env = SimonSaysVectorEnv(num_envs=2, action_mask=True)
    a, _ = env.reset(seed=0)
    b, *_ = env.step(np.zeros(2, dtype=np.int64))
    assert not np.shares_memory(a["action_mask"], b["action_mask"])


def test_vector_mask_equals_single_env_masks():
    n = 6  # goal: a diamond, which these 250 steps towards a wooden pickaxe never end on
    vec = SimonSaysVectorEnv(num_envs=n, tasks=["diamond"], horizon=500, action_mask=True)
    singles = [SimonSaysEnv(tasks=["diamond"], horizon=500, action_mask=True) for _ in range(n)]
    vobs, _ = vec.reset(seed=11)
    sobs = [s.reset(seed=11 + i)[0] for i, s in enumerate(singles)]
    rng = np.random.default_rng(1)
    planner = TechTreePlanner(vec.core)
    for _ in range(250):
        for i in range(n):
            np.testing.assert_array_equal(vobs["observations"][i], sobs[i]["observations"])
            np.testing.assert_array_equal(vobs["action_mask"][i], sobs[i]["action_mask"])
        mask = vobs["action_mask"]
        actions = np.array([planner.act(i, "wooden_pickaxe") if rng.random() < 0.6
                            else rng.choice(np.flatnonzero(mask[i])) for i in range(n)])
        vobs, *_ = vec.step(actions)
        sobs = [s.step(int(a))[0] for s, a in zip(singles, actions)]
    assert vobs["action_mask"][:, vec.core.kind_actions[CRAFT]].any()


def test_other_backends_refuse_the_mask_by_name():
    for backend in ("crafter", "minerl"):
        with pytest.raises(ValueError, match=f"action_mask.*{backend}"):
            SimonSaysVectorEnv(num_envs=1, backend=backend, action_mask=True)
        with pytest.raises(ValueError, match=f"action_mask.*{backend}"):
            SimonSaysEnv(backend=backend, action_mask=True)


# ---------------------------------------------------------------- policy side
def test_masked_logits_never_sample_an_invalid_action(probes):
    mask = torch.as_tensor(probes[0][::3][:400], dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    # logits that strongly prefer the invalid actions
    logits = torch.randn(mask.shape, generator=gen) * 5 + (1 - mask) * 50
    masked = mask_logits(logits, mask)
    assert torch.isfinite(masked).all()
    dist = torch.distributions.Categorical(logits=masked)
    samples = dist.sample((500,))  # [500, states]
    assert mask.gather(1, samples.T).bool().all()
    assert torch.isfinite(dist.entropy()).all() and torch.isfinite(dist.log_prob(samples)).all()
    # every valid action keeps its probability ratio; invalid ones get exactly 0
    probs = dist.probs
    assert (probs[mask == 0] == 0).all()
    ref = torch.softmax(logits.masked_fill(mask == 0, float("-inf")), dim=-1)
    torch.testing.assert_close(probs, ref)


def test_mask_logits_edge_cases():
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], requires_grad=True)
    mask = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # row 1: nothing valid
    out = mask_logits(logits, mask)
    assert out[0, 1] == 2.0 and out[0, 0] == torch.finfo(torch.float32).min
    assert torch.equal(out[1], logits[1])  # all-masked row: left unmasked, no NaN
    dist = torch.distributions.Categorical(logits=out)
    (dist.log_prob(torch.tensor([1, 2])).sum() + dist.entropy().sum()).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 0] == 0 and logits.grad[0, 2] == 0
    assert torch.equal(mask_logits(logits, mask.bool()), out)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        half = mask_logits(logits.detach().to(dtype), mask)
        assert half.dtype == dtype and not torch.isnan(torch.log_softmax(half, -1)).any()
        assert half[0, 0] == torch.finfo(dtype).min
    with pytest.raises(TypeError):
        mask_logits(torch.zeros(2, 3, dtype=torch.long), mask)
