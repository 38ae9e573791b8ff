"""Curricula on a simulated learner: uniform vs learning progress vs LP + dynamic exploration bonus.

No RL here: a *simulated learner* stands in for the agent so that the schedulers
can be compared on the full Simon Says tech tree in seconds. Each item i has a
competence c_i; its success probability as a goal is

    s_i = c_i * min(s_j for j in prerequisites(i))     (1 when it has none)

so an item can only be learned once its prerequisites are obtainable. An episode
on task i succeeds with probability s_i, and every success moves c_i towards 1
(``c += lr (1 - c)``): practice helps only when it sometimes succeeds, like RL
from a sparse reward. Tasks not practised decay slowly back towards the random
agent's competence. With the exploration bonus, every episode also obtains bonus
items incidentally (item j with probability ``explore * s_j``) and each such
pickup teaches j a little (``bonus_lr``), which is what the bonus reward buys.

The schedulers are the real `curricula` classes fed with `EpisodeOutcomes`, and
tasks are drawn with the wrappers' `LocalTaskSampler`; the distribution is
refreshed after every batch of episodes, as the env-side wrapper does.
All arms get the same episode budget and the same seeds.

    python -m benchmarks.curriculum_sim [--episodes 500000] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from curricula import EpisodeOutcomes, build_curriculum
from orchestrator.rl.curriculum_wrapper import LocalTaskSampler

RESULTS = Path(__file__).resolve().parent / "results"

ARMS = {
    "uniform": dict(kind="uniform", bonus=None),
    "learning_progress": dict(kind="learning_progress", bonus=None),
    "lp+dynamic_bonus": dict(kind="learning_progress", bonus={"mode": "dynamic", "threshold": 0.5}),
}


@dataclass(frozen=True)
class LearnerModel:
    """Constants of the simulated learner (per episode)."""

    random_competence: float = 0.05  # c of a random agent, every item
    lr: float = 0.01  # competence gained per success on the goal: c += lr (1 - c)
    forget: float = 2e-6  # decay of (c - random_competence) per episode without practising the item
    explore: float = 0.05  # chance per episode of obtaining a bonus item j, times s_j
    bonus_lr: float = 0.0005  # competence gained per bonus pickup (the bonus is small next to the goal reward)


def tech_tree() -> tuple[list[str], dict[str, frozenset[str]], str]:
    """Task names (ordered by depth) and direct prerequisites; the Simon Says tree when available."""
    try:
        from tasks.simon_says import make_task_space, prerequisites

        names = list(make_task_space().names)
        prereq = prerequisites()
        return names, {n: frozenset(prereq.get(n, ())) & set(names) for n in names}, "tasks.simon_says techtree"
    except ImportError:  # a synthetic stand-in of similar shape: 13 levels, 1-3 prerequisites each
        rng = np.random.default_rng(1234)
        names, prereq, levels = [], {}, []
        for depth, width in enumerate([20, 14, 3, 21, 6, 17, 13, 12, 28, 9, 21, 19, 1]):
            level = [f"item_d{depth}_{k}" for k in range(width)]
            for name in level:
                pool = [n for lv in levels[-3:] for n in lv]
                k = min(len(pool), int(rng.integers(1, 4))) if depth else 0
                prereq[name] = frozenset(rng.choice(pool, size=k, replace=False).tolist()) if k else frozenset()
            levels.append(level)
            names += level
        return names, prereq, "synthetic tree (tasks.simon_says not importable)"


class SimulatedLearner:
    """Vectorised success probabilities over a prerequisite DAG."""

    def __init__(self, names: list[str], prereq: dict[str, frozenset[str]], model: LearnerModel, rng: np.random.Generator):
        self.model = model
        self.rng = rng
        index = {n: i for i, n in enumerate(names)}
        n = len(names)
        width = max(1, max(len(p) for p in prereq.values()))
        # Padded prerequisite table; the pad points at a virtual always-obtainable item n.
        self.table = np.full((n, width), n, dtype=np.int64)
        for name, reqs in prereq.items():
            self.table[index[name], : len(reqs)] = [index[r] for r in sorted(reqs)]
        depth = np.zeros(n, dtype=np.int64)
        for _ in range(n):  # longest prerequisite chain, by relaxation
            padded = np.append(depth, -1)
            new = np.where((self.table < n).any(1), padded[self.table].max(1) + 1, 0)
            if np.array_equal(new, depth):
                break
            depth = new
        self.levels = [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]
        # ancestors[i, j]: j is a direct or indirect prerequisite of i (all obtained when i is).
        ancestors = np.zeros((n, n + 1), dtype=bool)
        for level in self.levels:
            for i in level:
                row = self.table[i][self.table[i] < n]
                ancestors[i, row] = True
                ancestors[i] |= ancestors[row].any(0) if len(row) else False
        self.ancestors = ancestors[:, :n].astype(np.float64)
        self.competence = np.full(n, model.random_competence)

    def success_probability(self) -> np.ndarray:
        s = np.ones(self.competence.shape[0] + 1)
        for level in self.levels:
            s[level] = self.competence[level] * s[self.table[level]].min(1)
        return s[:-1]

    def train(self, tasks: np.ndarray, bonus_items: np.ndarray | None) -> np.ndarray:
        """Run one batch of episodes on `tasks`; returns their successes."""
        m, n = self.model, self.competence.shape[0]
        s = self.success_probability()
        success = self.rng.random(tasks.shape[0]) < s[tasks]
        practised = np.bincount(tasks, minlength=n)
        wins = np.bincount(tasks, weights=success, minlength=n)
        c = self.competence
        c[:] = 1.0 - (1.0 - c) * (1.0 - m.lr) ** wins
        # Obtaining an item on the way to a goal (every prerequisite, transitively), or
        # picking it up for the bonus, is practice too: it counts against forgetting.
        practised = practised + wins @ self.ancestors
        if bonus_items is not None and bonus_items.any():
            pickups = self.rng.binomial(tasks.shape[0], np.where(bonus_items, m.explore * s, 0.0))
            c[:] = 1.0 - (1.0 - c) * (1.0 - m.bonus_lr) ** pickups
            practised = practised + pickups
        neglect = np.maximum(tasks.shape[0] - practised, 0)
        c[:] = m.random_competence + (c - m.random_competence) * (1.0 - m.forget) ** neglect
        return success


def run_arm(arm: str, names, prereq, seed: int, episodes: int, batch: int, checkpoints: list[int],
            model: LearnerModel, lp_params: dict, mastery: float) -> dict:
    spec = ARMS[arm]
    params = dict(lp_params) if spec["kind"] == "learning_progress" else {}
    curriculum = build_curriculum(spec["kind"], names, names, bonus=spec["bonus"], **params)
    rng = np.random.default_rng(seed)
    learner = SimulatedLearner(names, prereq, model, np.random.default_rng(seed + 10_000))
    sampler = LocalTaskSampler(curriculum.distribution())
    mastered_at: dict[int, int] = {}
    done = 0
    bonus_on = spec["bonus"] is not None
    t0 = time.perf_counter()
    while done < episodes:
        k = min(batch, episodes - done)
        tasks = sampler(k, rng)
        success = learner.train(tasks, sampler.distribution.bonus_items if bonus_on else None)
        curriculum.update(EpisodeOutcomes(tasks, success, success.astype(np.float64), np.ones(k, np.int64)))
        distribution = curriculum.distribution()
        if distribution.version != sampler.distribution.version:
            sampler.set_distribution(distribution)
        done += k
        for point in checkpoints:
            if point not in mastered_at and done >= point:
                mastered_at[point] = int((learner.success_probability() >= mastery).sum())
    return {
        "arm": arm,
        "seed": seed,
        "mastered": [mastered_at[p] for p in checkpoints],
        "final_success_mean": float(learner.success_probability().mean()),
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=500_000, help="episode budget per arm")
    parser.add_argument("--batch", type=int, default=256, help="episodes between distribution refreshes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--points", type=int, default=5, help="how many budget checkpoints to print")
    parser.add_argument("--mastery", type=float, default=0.9, help="success probability that counts as mastered")
    parser.add_argument("--uniform-mix", type=float, default=0.1, help="LP arms: uniform mix-in")
    parser.add_argument("--out", default=str(RESULTS / "curriculum_sim.json"))
    args = parser.parse_args()

    names, prereq, source = tech_tree()
    model = LearnerModel()
    lp_params = {"uniform_mix": args.uniform_mix}
    checkpoints = [int(round(args.episodes * (i + 1) / args.points)) for i in range(args.points)]
    runs = [
        run_arm(arm, names, prereq, seed, args.episodes, args.batch, checkpoints, model, lp_params, args.mastery)
        for arm in ARMS
        for seed in args.seeds
    ]
    summary = {}
    for arm in ARMS:
        mastered = np.array([r["mastered"] for r in runs if r["arm"] == arm], dtype=float)
        summary[arm] = {"mean": mastered.mean(0).tolist(), "min": mastered.min(0).tolist(), "max": mastered.max(0).tolist()}

    print(f"Items mastered (success >= {args.mastery}) out of {len(names)}; {source}; "
          f"mean over seeds {args.seeds} [min-max]")
    header = f"{'episodes':>10} | " + " | ".join(f"{arm:>22}" for arm in ARMS)
    print(header)
    print("-" * len(header))
    for i, point in enumerate(checkpoints):
        cells = []
        for arm in ARMS:
            s = summary[arm]
            cells.append(f"{s['mean'][i]:>10.1f} [{s['min'][i]:.0f}-{s['max'][i]:.0f}]".rjust(22))
        print(f"{point:>10} | " + " | ".join(cells))
    result = {
        "benchmark": "curriculum_sim",
        "tech_tree": source,
        "num_tasks": len(names),
        "episodes_per_arm": args.episodes,
        "refresh_batch": args.batch,
        "seeds": args.seeds,
        "mastery_threshold": args.mastery,
        "checkpoints": checkpoints,
        "learner_model": asdict(model),
        "arms": {arm: {**ARMS[arm], **({"params": lp_params} if ARMS[arm]["kind"] == "learning_progress" else {})} for arm in ARMS},
        "mastered": summary,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
