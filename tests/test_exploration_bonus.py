"""The exploration bonus and what the curriculum does for a task the agent cannot yet do.

Known answers on hand-built success tables for which items pay, the reserve a by-product task
gets in the sampling rule, and, through the real techtree env, the curriculum wrapper and the
learning-progress scheduler, a zero-success task whose item is obtained in other goals'
episodes being practised instead of sitting at the uniform floor.
"""

from __future__ import annotations

import numpy as np
import pytest

from curricula import EpisodeOutcomes, ExplorationBonus, LearningProgressCurriculum
from curricula.base import recent_weights
from curricula.sampling import learning_progress_probabilities
from orchestrator.rl.curriculum_wrapper import CurriculumVectorWrapper, LocalCurriculumClient
from tasks.simon_says.envs import SimonSaysVectorEnv
from tasks.simon_says.scripted import TechTreePlanner

NAN = np.nan
# Five items: four tasks (success rate as a goal) and one item that is never a goal.
RATE = np.array([0.0, 0.5, 0.49, NAN, 1.0])
IS_TASK = np.array([True, True, True, False, True])


@pytest.mark.parametrize("items, non_task, obtained, expected", [
    # tasks only: the non-task item never pays; a task pays below the threshold, not at it
    ("tasks", "until_obtained_reliably", 0.0, [True, False, True, False, False]),
    ("tasks", "always", 0.0, [True, False, True, False, False]),
    # all items: the non-task item by its rule
    ("all", "always", 0.9, [True, False, True, True, False]),
    ("all", "until_obtained_reliably", 0.49, [True, False, True, True, False]),
    ("all", "until_obtained_reliably", 0.5, [True, False, True, False, False]),
])
def test_which_items_pay_with_the_dynamic_bonus(items, non_task, obtained, expected):
    bonus = ExplorationBonus(mode="dynamic", threshold=0.5, items=items, non_task_items=non_task)
    obtained_rate = np.array([0.0, 0.0, 0.0, obtained, 0.0])
    assert bonus.bonus_items(RATE, IS_TASK, obtained_rate).tolist() == expected


def test_static_and_off_ignore_success():
    assert ExplorationBonus(mode="static", items="tasks").bonus_items(RATE, IS_TASK).tolist() == IS_TASK.tolist()
    assert ExplorationBonus(mode="static", items="all").bonus_items(RATE, IS_TASK).all()
    assert not ExplorationBonus(mode="off", items="all").bonus_items(RATE, IS_TASK).any()


@pytest.mark.parametrize("threshold, expected", [
    (0.0, [False, False, False, False, False]),  # every rate is >= 0: nothing pays
    (1.0, [True, True, True, False, False]),     # only a certain item stops paying
])
def test_threshold_edges(threshold, expected):
    bonus = ExplorationBonus(mode="dynamic", threshold=threshold, items="tasks")
    assert bonus.bonus_items(RATE, IS_TASK).tolist() == expected


def test_bad_bonus_settings_name_the_field():
    with pytest.raises(ValueError, match="items must be one of"):
        ExplorationBonus(items="some")
    with pytest.raises(ValueError, match="non_task_items must be one of"):
        ExplorationBonus(non_task_items="never")
    with pytest.raises(ValueError, match="valid: mode, size, threshold, items, non_task_items"):
        ExplorationBonus.from_config({"scope": "x"})


def test_non_task_item_stops_paying_once_farmed():
    """items=all: an item that is never a goal pays until enough recent episodes obtain it."""
    cur = LearningProgressCurriculum(["log"], ["log", "dirt"], bonus={"mode": "dynamic", "items": "all",
                                                                     "threshold": 0.5})
    assert cur.distribution().bonus_items.tolist() == [True, True]
    n = 600  # ~2 windows of the per-episode average: its weight is well past one half
    cur.update(EpisodeOutcomes(task=np.zeros(n, np.int64), success=np.zeros(n, bool), episode_return=np.zeros(n),
                               length=np.ones(n, np.int64), items_obtained=np.tile([False, True], (n, 1))))
    assert cur.item_obtained_rate[1] == pytest.approx(1 - (1 - 1 / 300) ** n)
    assert cur.distribution().bonus_items.tolist() == [True, False]


def test_recent_weights_equal_one_update_per_value():
    values = np.array([1.0, 0.0, 3.0, 2.0])
    m = 0.5
    for v in values:
        m = 0.75 * m + 0.25 * v
    weights, keep = recent_weights(4, 0.25)
    assert keep * 0.5 + weights @ values == pytest.approx(m)
    assert weights.tolist() == pytest.approx([0.25 * 0.75 ** 3, 0.25 * 0.75 ** 2, 0.25 * 0.75, 0.25])


def test_bonus_share_of_return_known_answer():
    cur = LearningProgressCurriculum(["a", "b"], bonus="dynamic")
    cur.update(EpisodeOutcomes(task=np.array([0, 1]), success=np.array([True, False]),
                               episode_return=np.array([1.0, 0.0]), length=np.array([3, 4]),
                               bonus_return=np.array([0.2, 0.1])))
    a = 1 / 300
    env = a * (1 - a) * 1.0 + a * 0.0
    bonus = a * (1 - a) * 0.2 + a * 0.1
    metrics = cur.metrics()
    assert metrics["bonus/share_of_return"] == pytest.approx(bonus / (env + bonus))
    assert metrics["bonus/paying_items"] == 1.0  # "a" succeeded (rate 1 >= 0.5); "b" still pays


def test_bonus_return_is_validated():
    with pytest.raises(ValueError, match=r"bonus_return\[1\] = nan is not finite"):
        EpisodeOutcomes(task=[0, 0], success=[True, False], episode_return=[1.0, 0.0], length=[1, 1],
                        bonus_return=[0.0, np.nan]).validate(1)


# -- the by-product reserve in the sampling rule -------------------------------------------

def test_by_product_task_gets_its_uniform_share_known_answer():
    lp = np.array([0.2, 0.0, 0.0, 0.0])
    success = np.array([0.5, 0.0, 0.0, 0.0])
    measured = np.array([True, True, True, False])
    by_product = np.array([False, False, True, False])
    # untried task 3 keeps 1/4, by-product task 2 keeps 1/4, task 0 (the only LP/success) the rest
    p = learning_progress_probabilities(lp, success, measured, reserve_weight=by_product * 1.0)
    assert p.tolist() == pytest.approx([0.5, 0.0, 0.25, 0.25])
    # without the reserve task 2 falls to 0, and with uniform_mix=0.1 to the floor 0.025
    p = learning_progress_probabilities(lp, success, measured, uniform_mix=0.1)
    assert p.tolist() == pytest.approx([0.9 * 0.75 + 0.025, 0.025, 0.025, 0.9 * 0.25 + 0.025])


def test_reserves_above_one_are_scaled_and_all_by_product_tasks_share_everything():
    lp = np.zeros(3)
    measured = np.array([True, True, True])
    p = learning_progress_probabilities(lp, np.zeros(3), measured, reserve_weight=np.array([2.0, 2.0, 2.0]))
    assert p.tolist() == pytest.approx([1 / 3] * 3)
    p = learning_progress_probabilities(np.array([0.1, 0.0, 0.0]), np.zeros(3), measured,
                                        reserve_weight=np.array([0.0, 3.0, 3.0]))
    assert p.tolist() == pytest.approx([0.0, 0.5, 0.5])  # 2 x 3/3 reserved, scaled to 1


def test_curriculum_lifts_a_never_succeeded_task_whose_item_shows_up_elsewhere():
    tasks = ["log", "planks", "furnace", "chest"]
    items = tasks + ["crafting_table"]

    def batch(task, success, chest_obtained):
        got = np.zeros((len(task), len(items)), bool)
        got[:, 3] = chest_obtained
        return EpisodeOutcomes(task=np.array(task), success=np.array(success), episode_return=np.array(success, float),
                               length=np.ones(len(task), np.int64), items_obtained=got)

    for weight, chest in ((1.0, 0.25), (0.0, 0.0)):
        cur = LearningProgressCurriculum(tasks, items, uniform_mix=0.0, by_product_weight=weight)
        cur.update(batch([0, 1, 2, 3], [True, True, False, False], [False, False, True, False]))
        assert cur.obtained_as_by_product().tolist() == [False, False, False, True]
        assert cur.distribution().probabilities[3] == pytest.approx(chest)
    # once the chest succeeds as a goal it leaves the reserve for the LP rule
    cur.update(batch([3], [True], [True]))
    assert not cur.obtained_as_by_product().any()


def test_frontier_task_is_practised_once_its_prerequisites_are_reliable():
    """log <- planks <- crafting_table; furnace needs the table. Nothing ever obtains a furnace,
    so only the frontier rule can lift it, and only once every task it needs is reliable."""
    tasks = ["log", "planks", "crafting_table", "furnace"]
    prerequisites = [[], [0], [0, 1], [0, 1, 2]]

    def batch(task, success):
        return EpisodeOutcomes(task=np.array(task), success=np.array(success, bool),
                               episode_return=np.array(success, float), length=np.ones(len(task), np.int64))

    cur = LearningProgressCurriculum(tasks, uniform_mix=0.0, alpha_fast=1.0, alpha_slow=1.0,
                                     prerequisites=prerequisites, bonus={"mode": "dynamic", "threshold": 0.5})
    cur.update(batch([0, 1, 2, 3], [True, True, False, False]))
    # the table (needs log, planks: reliable) is at the frontier; the furnace (needs the table) is not
    assert cur.at_frontier().tolist() == [False, False, True, False]
    assert cur.distribution().probabilities.tolist() == pytest.approx([0.375, 0.375, 0.25, 0.0])
    cur.update(batch([2], [True]))  # the table succeeds (alpha 1: rate 1) and leaves the frontier
    assert cur.at_frontier().tolist() == [False, False, False, True]
    assert cur.distribution().probabilities[3] == pytest.approx(0.25)
    off = LearningProgressCurriculum(tasks, uniform_mix=0.0, prerequisites=prerequisites, frontier_weight=0.0)
    off.update(batch([0, 1, 2, 3], [True, True, True, False]))
    assert off.distribution().probabilities[3] == 0.0
    with pytest.raises(ValueError, match="prerequisites name task ids outside 0..3"):
        LearningProgressCurriculum(tasks, prerequisites=[[], [0], [0, 7], []])


# -- through the real env: the bonus and the curriculum together ---------------------------

def test_zero_success_task_whose_item_is_obtained_elsewhere_gets_practice():
    """Tasks log, planks, furnace, chest on the techtree env. The policy reaches log and planks
    when told to; told "furnace" it builds a chest on the way (it never gets a furnace); told
    "chest" it only explores. So the chest never succeeds as a goal but is obtained in furnace
    episodes, where the dynamic bonus pays for it. The curriculum must hand the chest goal
    episodes at its uniform share, not the uniform_mix floor."""
    tasks = ["log", "planks", "furnace", "chest"]
    n = 32
    env = SimonSaysVectorEnv(num_envs=n, tasks=tasks, horizon=64, action_mask=True)
    names = list(env.item_names)
    chest_item = names.index("chest")

    def run(by_product_weight: float) -> tuple[np.ndarray, float, LearningProgressCurriculum]:
        scheduler = LearningProgressCurriculum(tasks, names, uniform_mix=0.1, by_product_weight=by_product_weight,
                                               bonus={"mode": "dynamic", "items": "tasks"})
        wrapped = CurriculumVectorWrapper(env, LocalCurriculumClient(scheduler), bonus_size=0.1,
                                          report_every_episodes=16, refresh_every_episodes=16,
                                          wait_for_curriculum=True)
        planner = TechTreePlanner(env.core)
        wrapped.reset(seed=3)
        bonus_for_chest = 0.0
        for _ in range(1500):
            actions = np.zeros(n, np.int64)  # explore
            for i in range(n):
                task = tasks[int(env.core.task[i])]
                if task in ("log", "planks"):
                    actions[i] = planner.act(i, task)
                elif task == "furnace" and env.core.inventory[i, chest_item] == 0:
                    actions[i] = planner.act(i, "chest")
            before = env.core.ever[:, chest_item].copy()
            _, reward, *_ = wrapped.step(actions)
            got_chest = env.core.ever[:, chest_item] & ~before
            bonus_for_chest += float(np.asarray(reward)[got_chest].sum())
        wrapped.flush()
        return scheduler.episodes.copy(), bonus_for_chest, scheduler

    episodes, bonus_paid, scheduler = run(1.0)
    assert scheduler.successes[3] == 0 and scheduler.item_obtained_episodes[chest_item] > 0
    assert bonus_paid > 0  # the dynamic bonus paid for chests obtained in furnace episodes
    floor_episodes, _, floor = run(0.0)
    assert floor.successes[3] == 0
    share = episodes[3] / episodes.sum()
    floor_share = floor_episodes[3] / floor_episodes.sum()
    # uniform share 0.25 (x 0.9 + 0.025) against the floor 0.025, once the chest first shows up
    assert share > 0.15 and floor_share < 0.08, (share, floor_share)


# -- count milestones ----------------------------------------------------------------------

def test_count_milestones_of_the_techtree_known_answers():
    from tasks.simon_says import count_milestones
    from tasks.simon_says.techtree_data import load_tech_tree

    tree = load_tech_tree()
    m = count_milestones(tree)
    served = {name: {tree.item_names[i] for i in np.flatnonzero(row)} for name, row in zip(m.names, m.serves)}
    assert served["cobblestone x3"] == {"cobblestone_slab", "stone_axe", "stone_pickaxe"}
    assert served["cobblestone x8"] == {"furnace"}
    assert served["planks x8"] == {"chest", "jukebox", "noteblock"}
    assert "log x1" not in served and all(c >= 2 for c in m.count)
    assert len(m) == len(set(m.names)) == 84


def test_env_reports_each_milestone_once_per_episode():
    env = SimonSaysVectorEnv(num_envs=2, tasks=["furnace"], horizon=200, action_mask=True, count_milestones=True)
    names = list(env.milestones.names)
    cobble3, cobble8 = names.index("cobblestone x3"), names.index("cobblestone x8")
    planner = TechTreePlanner(env.core)
    _, info = env.reset(seed=0)
    assert not info["milestones_obtained"].any()
    first = {cobble3: [], cobble8: []}
    finished = np.zeros(2, bool)  # count the first episode of each env only
    for step in range(200):
        _, _, term, trunc, info = env.step(np.array([planner.act(i, "furnace") for i in range(2)]))
        for m in first:
            first[m] += [(step, i) for i in np.flatnonzero(info["milestones_obtained"][:, m] & ~finished)]
        finished |= term | trunc
        if finished.all():
            break
    assert finished.all()
    # the planner gathers 8 cobblestone for the furnace: both milestones, once each per env
    assert sorted(i for _, i in first[cobble3]) == [0, 1] and sorted(i for _, i in first[cobble8]) == [0, 1]
    with pytest.raises(ValueError, match="count_milestones=True is only offered by the techtree backend"):
        SimonSaysVectorEnv(num_envs=1, backend="crafter", count_milestones=True)


def test_wrapper_pays_a_milestone_while_an_item_it_serves_pays():
    tasks = ["log", "furnace"]
    env = SimonSaysVectorEnv(num_envs=1, tasks=tasks, horizon=200, action_mask=True, count_milestones=True)
    names = list(env.item_names)
    scheduler = LearningProgressCurriculum(tasks, names, bonus={"mode": "dynamic", "items": "tasks"})
    wrapped = CurriculumVectorWrapper(env, LocalCurriculumClient(scheduler), bonus_size=0.1,
                                      milestone_serves=env.milestones.serves, wait_for_curriculum=True)
    planner = TechTreePlanner(env.core)
    wrapped.reset(seed=1, options={"task": np.array([1])})
    cobble8 = list(env.milestones.names).index("cobblestone x8")
    paid = []
    for _ in range(200):
        _, reward, term, _, info = wrapped.step(np.array([planner.act(0, "furnace")]))
        if info["milestones_obtained"][0, cobble8]:
            paid.append(float(reward[0]))
        if term[0]:
            break
    # furnace pays (success 0 < 0.5) so "cobblestone x8", which serves only the furnace, pays 0.1
    assert paid == [pytest.approx(0.1)]
    # once the furnace is reliable it stops paying, and so does its milestone
    scheduler.update(EpisodeOutcomes(task=np.ones(20, np.int64), success=np.ones(20, bool),
                                     episode_return=np.ones(20), length=np.ones(20, np.int64)))
    wrapped.link.refresh_now()
    assert wrapped.link.bonus(None, np.array([1]), np.eye(1, len(env.milestones), cobble8, dtype=bool)) == 0.0
    with pytest.raises(ValueError, match="do not combine with a goal scope"):
        CurriculumVectorWrapper(env, LocalCurriculumClient(scheduler), bonus_size=0.1,
                                milestone_serves=env.milestones.serves, bonus_scope=np.ones((2, len(names)), bool))


# -- config ------------------------------------------------------------------------------------

def test_config_refuses_milestones_with_a_goal_scope_and_reads_the_old_scope_name(capsys):
    from pathlib import Path

    from orchestrator.cli import main
    from orchestrator.config import load_config

    smoke = str(Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml")
    assert main(["check", smoke, "--set", "bonus.scope=goal_prerequisites"]) == 2
    assert "bonus.count_milestones: milestones are paid in every episode" in capsys.readouterr().err
    assert load_config(smoke, ["bonus.scope=all_items"]).bonus.scope == "every_episode"
    assert main(["check", smoke, "--set", "bonus.items=some"]) == 2
    assert "bonus.items" in capsys.readouterr().err


def test_an_episode_never_earns_more_than_the_cap():
    """With 0.3 per episode, 0.1 per item: the fourth and later new items pay nothing."""
    tasks = ["log", "planks", "stick", "crafting_table", "wooden_pickaxe"]
    env = SimonSaysVectorEnv(num_envs=4, tasks=tasks, horizon=64, action_mask=True)
    scheduler = LearningProgressCurriculum(tasks, list(env.item_names), bonus={"mode": "dynamic", "items": "tasks"})
    wrapped = CurriculumVectorWrapper(env, LocalCurriculumClient(scheduler), bonus_size=0.1,
                                      max_bonus_per_episode=0.3, wait_for_curriculum=True)
    planner = TechTreePlanner(env.core)
    wrapped.reset(seed=0, options={"task": np.full(4, 4)})  # goal wooden_pickaxe: log, planks, stick, table first
    paid = np.zeros(4)
    finished = np.zeros(4, bool)  # the first episode of each env only
    for _ in range(64):
        _, reward, term, trunc, _ = wrapped.step(np.array([planner.act(i, "wooden_pickaxe") for i in range(4)]))
        paid += np.where(finished, 0.0, np.where(term, reward - 1.0, reward))  # the goal's 1 aside
        finished |= term | trunc
        if finished.all():
            break
    assert finished.all() and paid.tolist() == pytest.approx([0.3] * 4)
    with pytest.raises(ValueError, match="max_bonus_per_episode must be a finite number > 0"):
        CurriculumVectorWrapper(env, LocalCurriculumClient(scheduler), max_bonus_per_episode=0.0)
