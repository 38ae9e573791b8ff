"""Choosing task groups from affinities, as TAG does (Fifty et al. 2021, sec. 3.2).

A *grouping* is a list of at most ``max_groups`` groups (sets of tasks; a task
may be in several).  The affinity a group G gives task j in G is the mean
affinity onto j from G's other members,

    S(G, j) = mean_{i in G, i != j} affinity[i -> j]        (0 for G = {j}),

each task is served by the group that helps it most, and a grouping scores

    score = sum_j max_{G containing j} S(G, j).

Every task must be in some group.  ``choose_groupings`` returns the ``top_k``
best groupings with their scores:

- exhaustive (exact) up to ``EXHAUSTIVE_MAX_TASKS`` tasks.  The best grouping is
  a partition of the tasks into blocks P (the tasks each group serves) plus, per
  block, the helper set G >= P maximising sum_{j in P} S(G, j); so the search is
  (1) the best helper set of every subset P (all 3^n pairs P <= G), then (2) a
  dynamic program over subsets for the top-K partitions into <= max_groups blocks.
- beam search beyond: tasks are placed one at a time (in index order) into an
  existing block or a new one while fewer than ``max_groups`` are open, keeping
  the ``beam_width`` best partial partitions (a block helps only its own
  members); each final partition's groups are then grown greedily by helper
  tasks from other blocks while that raises the block's served affinity.  Not
  guaranteed optimal; on small problems it agrees with the exhaustive search
  (tests/test_grouping.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXHAUSTIVE_MAX_TASKS = 12
METHODS = ("auto", "exhaustive", "beam")


@dataclass(frozen=True)
class Grouping:
    """One candidate: the groups (task names), its total affinity, and which group serves each task."""

    groups: tuple[tuple[str, ...], ...]
    score: float
    served_by: dict[str, int]  # task name -> index into groups

    def labels(self, task_names: Sequence[str]) -> list[int]:
        """Serving group of each task, in ``task_names`` order (e.g. for adjusted_rand_score)."""
        return [self.served_by[n] for n in task_names]

    def as_lists(self) -> list[list[str]]:
        """Plain lists, the shape of ``groups:`` in a config."""
        return [list(g) for g in self.groups]


def _checked(affinity: np.ndarray | Sequence[Sequence[float]], task_names: Sequence[str]) -> np.ndarray:
    a = np.asarray(affinity, dtype=np.float64)
    n = len(task_names)
    if a.shape != (n, n):
        raise ValueError(f"affinity must be [{n} x {n}] for {n} task names, got shape {a.shape}")
    if len(set(task_names)) != n:
        raise ValueError(f"task_names must be unique, got {list(task_names)}")
    off = ~np.eye(n, dtype=bool)
    if not np.isfinite(a[off]).all():
        i, j = np.argwhere(~np.isfinite(a) & off)[0]
        raise ValueError(f"affinity[{task_names[i]} -> {task_names[j]}] is not finite (never measured?)")
    a = a.copy()
    np.fill_diagonal(a, 0.0)  # a task's affinity onto itself plays no part
    return a


def served_affinity(affinity: np.ndarray, group: Sequence[int], task: int) -> float:
    """S(G, j): mean affinity onto ``task`` from the other members of ``group`` (0 alone)."""
    others = [i for i in group if i != task]
    return float(np.mean([affinity[i, task] for i in others])) if others else 0.0


def score_grouping(
    affinity: np.ndarray | Sequence[Sequence[float]],
    task_names: Sequence[str],
    groups: Sequence[Sequence[str]],
) -> Grouping:
    """Score a given grouping (task names); every task must be in some group."""
    a = _checked(affinity, task_names)
    index = {n: i for i, n in enumerate(task_names)}
    members: list[list[int]] = []
    for g in groups:
        unknown = [n for n in g if n not in index]
        if unknown:
            raise ValueError(f"group {list(g)} names unknown task(s) {unknown}; valid tasks: {list(task_names)}")
        members.append(sorted({index[n] for n in g}))
    missing = [n for n in task_names if not any(index[n] in m for m in members)]
    if missing:
        raise ValueError(f"task(s) {missing} are in no group")
    served_by, score = {}, 0.0
    for j, name in enumerate(task_names):
        best = max((served_affinity(a, m, j), -gi) for gi, m in enumerate(members) if j in m)
        score += best[0]
        served_by[name] = -best[1]
    return Grouping(tuple(tuple(task_names[i] for i in m) for m in members), score, served_by)


def _canonical(groups: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(sorted({tuple(sorted(set(g))) for g in groups}))


def _bits(mask: int) -> list[int]:
    return [b for b in range(mask.bit_length()) if mask >> b & 1]


def _submask_table(mask: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All submasks of ``mask`` and (optionally) the sums of ``weights`` over their bits."""
    masks = np.zeros(1, dtype=np.int64)
    sums = np.zeros(1)
    for b in _bits(mask):
        masks = np.concatenate([masks, masks | (1 << b)])
        if weights is not None:
            sums = np.concatenate([sums, sums + weights[b]])
    return masks, sums


def _exhaustive(a: np.ndarray, max_groups: int, keep: int) -> list[list[list[int]]]:
    n = a.shape[0]
    full = (1 << n) - 1
    count = 1 << n
    membership = ((np.arange(count)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float64)
    size = membership.sum(axis=1)
    served = (membership @ a) / np.maximum(size - 1, 1)[:, None]  # S(G, j) for j in G (0 when G = {j})

    # (1) best helper set G >= P for every block P; the smallest G wins ties (groups stay tight).
    value = np.full(count, -np.inf)
    helper = np.zeros(count, dtype=np.int64)
    for g in sorted(range(1, count), key=lambda m: (bin(m).count("1"), m)):
        subs, sums = _submask_table(g, served[g])
        better = sums[1:] > value[subs[1:]] + 1e-12
        value[subs[1:][better]] = sums[1:][better]
        helper[subs[1:][better]] = g

    # A hair per block so that, among equal scores, partitions with fewer groups come first.
    value = value - 1e-9
    # (2) top-`keep` partitions of every subset into <= r blocks (the block holding the lowest task first).
    scores = np.full((count, max_groups + 1, keep), -np.inf)
    scores[0, :, 0] = 0.0
    block = np.zeros((count, max_groups + 1, keep), dtype=np.int64)
    rank = np.zeros((count, max_groups + 1, keep), dtype=np.int64)
    for mask in range(1, count):
        low = mask & -mask
        subs, _ = _submask_table(mask ^ low)
        blocks = subs | low
        rests = mask ^ blocks
        for r in range(1, max_groups + 1):
            cand = value[blocks][:, None] + scores[rests, r - 1, :]  # [blocks x keep]
            flat = cand.reshape(-1)
            top = np.argsort(-flat, kind="stable")[:keep]
            scores[mask, r, : len(top)] = flat[top]
            block[mask, r, : len(top)] = blocks[top // keep]
            rank[mask, r, : len(top)] = top % keep

    out = []
    for k in range(keep):
        if not np.isfinite(scores[full, max_groups, k]):
            break
        mask, r, kk, groups = full, max_groups, k, []
        while mask:
            p = int(block[mask, r, kk])
            groups.append(_bits(int(helper[p])))
            mask, kk, r = mask ^ p, int(rank[mask, r, kk]), r - 1
        out.append(groups)
    return out


def _block_value(a: np.ndarray, helpers: Sequence[int], block: Sequence[int]) -> float:
    return sum(served_affinity(a, helpers, j) for j in block)


def _beam(a: np.ndarray, max_groups: int, beam_width: int) -> list[list[list[int]]]:
    n = a.shape[0]
    beam: list[tuple[float, tuple[tuple[int, ...], ...]]] = [(0.0, ())]
    for task in range(n):
        children: dict[tuple[tuple[int, ...], ...], float] = {}
        for _, blocks in beam:
            options = [blocks[:b] + (blocks[b] + (task,),) + blocks[b + 1 :] for b in range(len(blocks))]
            if len(blocks) < max_groups:
                options.append(blocks + ((task,),))
            for option in options:
                key = tuple(sorted(option))
                if key not in children:
                    children[key] = sum(_block_value(a, blk, blk) for blk in key)
        beam = sorted(((s, k) for k, s in children.items()), key=lambda x: -x[0])[:beam_width]
    out = []
    for _, blocks in beam:
        groups = []
        for blk in blocks:
            helpers = list(blk)
            while True:  # grow the group by the helper task that raises its members' affinity most
                current = _block_value(a, helpers, blk)
                gains = [(_block_value(a, helpers + [h], blk) - current, h) for h in range(n) if h not in helpers]
                best = max(gains, default=(0.0, -1))
                if best[0] <= 1e-12:
                    break
                helpers.append(best[1])
            groups.append(sorted(helpers))
        out.append(groups)
    return out


def choose_groupings(
    affinity: np.ndarray | Sequence[Sequence[float]],
    task_names: Sequence[str],
    max_groups: int,
    top_k: int = 1,
    method: str = "auto",
    beam_width: int = 64,
) -> list[Grouping]:
    """The ``top_k`` best groupings (best first) into at most ``max_groups`` groups.

    ``affinity[i, j]``: affinity of source task i onto task j (e.g. ``TaskAffinity.matrix()``).
    ``method``: "exhaustive" (exact; at most EXHAUSTIVE_MAX_TASKS tasks), "beam", or
    "auto" (exhaustive when it can).  Fewer than ``top_k`` come back when fewer distinct groupings exist.
    """
    a = _checked(affinity, task_names)
    n = len(task_names)
    if not isinstance(max_groups, int) or max_groups < 1:
        raise ValueError(f"max_groups must be a positive int, got {max_groups!r}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid choices: {list(METHODS)}")
    if method == "exhaustive" and n > EXHAUSTIVE_MAX_TASKS:
        raise ValueError(f"method='exhaustive' handles at most {EXHAUSTIVE_MAX_TASKS} tasks, got {n}; use 'beam'")
    if not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive int, got {beam_width!r}")
    max_groups = min(max_groups, n)
    exhaustive = method == "exhaustive" or (method == "auto" and n <= EXHAUSTIVE_MAX_TASKS)
    # Different partitions can give the same groups: search deeper than top_k, then deduplicate.
    raw = _exhaustive(a, max_groups, 4 * top_k) if exhaustive else _beam(a, max_groups, max(beam_width, 4 * top_k))
    seen: set[tuple[tuple[int, ...], ...]] = set()
    results = []
    for groups in raw:
        key = _canonical(groups)
        if key in seen:
            continue
        seen.add(key)
        results.append(score_grouping(a, task_names, [[task_names[i] for i in g] for g in key]))
    # Equal scores (up to rounding): fewer groups, then fewer memberships, win (cheaper to train).
    results.sort(key=lambda g: (-round(g.score, 9), len(g.groups), sum(map(len, g.groups))))
    return results[:top_k]
