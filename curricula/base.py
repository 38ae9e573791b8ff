"""What every scheduler shares: validation, success tracking, the bonus set, versioning, state."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .exploration_bonus import ExplorationBonus
from .outcomes import CurriculumDistribution, EpisodeOutcomes
from .sampling import entropy
from .success_estimates import SuccessEstimates, reweight

__all__ = ["Curriculum", "SUCCESS_SOURCES", "RECENT_EPISODE_WEIGHT", "recent_weights"]

# Weight of one episode in the per-episode moving averages (about the last 300 episodes count).
RECENT_EPISODE_WEIGHT = 1.0 / 300.0


def recent_weights(n: int, alpha: float) -> tuple[np.ndarray, float]:
    """Weights that apply ``m <- (1 - alpha) m + alpha x`` to `n` values in order at once:
    ``m_new = keep * m + weights @ x`` with ``weights[i] = alpha (1 - alpha)^(n-1-i)``."""
    decay = (1.0 - alpha) ** np.arange(n - 1, -1, -1, dtype=np.float64)
    return alpha * decay, (1.0 - alpha) ** n

SUCCESS_SOURCES = ("online", "evaluation")


class Curriculum:
    """Base class of task schedulers (pure numpy, no Ray).

    It tracks every task's success with `SuccessEstimates` (so even the uniform
    baseline reports p_fast, p_slow and learning progress), derives the bonus set
    from an `ExplorationBonus`, and versions the published distribution.
    Subclasses implement `_compute_probabilities`.

    Args:
        task_names: the tasks, in task-id order.
        item_names: the item vocabulary of the exploration bonus (defaults to the
            task names); an item that is also a task uses that task's success rate.
        alpha_fast, alpha_slow: EMA weights in (0, 1] (default 0.1 each).
        theta: reweighting parameter of f(p), in (0, 1) (default 0.1).
        signed: use the signed ``f(p_fast) - f(p_slow)`` instead of its absolute value.
        random_baseline: see `SuccessEstimates` (None, number, per-task list, "first_measurement").
        max_random_baseline: cap for measured random baselines.
        success_source: "online" (each finished training episode is a 0/1
            measurement of its task) or "evaluation" (only batches with
            ``evaluation=True`` measure success: one measurement per task per
            batch, its success rate in that batch).
        evaluation_interval_steps: with "evaluation", training env steps between
            evaluations; `evaluation_due` tells the driver when to run one.
        bonus: ExplorationBonus, dict of its fields, mode name, or None (off).
    """

    kind = "base"

    def __init__(
        self,
        task_names: Sequence[str],
        item_names: Sequence[str] | None = None,
        *,
        alpha_fast: float = 0.1,
        alpha_slow: float = 0.1,
        theta: float = 0.1,
        signed: bool = False,
        random_baseline: float | Sequence[float] | str | None = None,
        max_random_baseline: float = 0.75,
        success_source: str = "online",
        evaluation_interval_steps: int | None = None,
        bonus: ExplorationBonus | dict | str | None = None,
    ) -> None:
        self.task_names = tuple(str(t) for t in task_names)
        if not self.task_names:
            raise ValueError("task_names must name at least one task")
        if len(set(self.task_names)) != len(self.task_names):
            dupes = sorted({t for t in self.task_names if self.task_names.count(t) > 1})
            raise ValueError(f"task_names has duplicates: {dupes}")
        self.item_names = tuple(str(i) for i in (item_names if item_names is not None else self.task_names))
        if not (0.0 < theta < 1.0):
            raise ValueError(f"theta must be in (0, 1), got {theta}")
        if success_source not in SUCCESS_SOURCES:
            raise ValueError(f"success_source must be one of {SUCCESS_SOURCES}, got {success_source!r}")
        if success_source == "evaluation":
            if evaluation_interval_steps is None or int(evaluation_interval_steps) <= 0:
                raise ValueError(
                    "evaluation_interval_steps must be a positive number of env steps when "
                    f"success_source='evaluation', got {evaluation_interval_steps}"
                )
        elif random_baseline == "first_measurement":
            raise ValueError(
                "random_baseline='first_measurement' needs success_source='evaluation' "
                "(an online measurement is a single 0/1 episode); give a number instead"
            )
        # The constructor settings, so the scheduler can be rebuilt from small plain data.
        self._params: dict[str, Any] = {
            "alpha_fast": float(alpha_fast),
            "alpha_slow": float(alpha_slow),
            "theta": float(theta),
            "signed": bool(signed),
            "random_baseline": np.asarray(random_baseline).tolist() if random_baseline is not None and not isinstance(random_baseline, str) else random_baseline,
            "max_random_baseline": float(max_random_baseline),
            "success_source": success_source,
            "evaluation_interval_steps": evaluation_interval_steps,
        }
        self.theta = float(theta)
        self.signed = bool(signed)
        self.success_source = success_source
        self.evaluation_interval_steps = None if evaluation_interval_steps is None else int(evaluation_interval_steps)
        self.bonus = ExplorationBonus.from_config(bonus)
        self._params["bonus"] = self.bonus.as_dict()
        self.estimates = SuccessEstimates(
            len(self.task_names), alpha_fast, alpha_slow, random_baseline, max_random_baseline
        )
        task_index = {name: i for i, name in enumerate(self.task_names)}
        # Item -> task id (-1 when the item is not a task): the dynamic bonus reads
        # an item's success rate as a goal through it.
        self._item_task = np.array([task_index.get(name, -1) for name in self.item_names], dtype=np.int64)
        self._item_is_task = self._item_task >= 0
        item_index = {name: i for i, name in enumerate(self.item_names)}
        # Task -> its item (-1 when the task is not an item): a task whose item is obtained in
        # other goals' episodes is within the agent's reach (see LearningProgressCurriculum).
        self._task_item = np.array([item_index.get(name, -1) for name in self.task_names], dtype=np.int64)
        n = len(self.task_names)
        self.episodes = np.zeros(n, dtype=np.int64)
        self.successes = np.zeros(n, dtype=np.int64)
        self.evaluation_episodes = np.zeros(n, dtype=np.int64)
        self.item_obtained_episodes = np.zeros(len(self.item_names), dtype=np.int64)
        # Per-episode moving averages over recent training episodes (weight RECENT_EPISODE_WEIGHT
        # each): how often each item is obtained whatever the goal, and the return split into
        # the environment's and the bonus's share.
        self.item_obtained_rate = np.zeros(len(self.item_names), dtype=np.float64)
        self.recent_env_return = 0.0
        self.recent_bonus_return = 0.0
        self.env_steps = 0
        self.steps_since_evaluation = 0
        self.evaluations = 0
        self._version = 0
        self._dirty = False
        self._probabilities = self._compute_probabilities()
        self._bonus_items = self._compute_bonus_items()
        self._distribution = CurriculumDistribution(self._probabilities, self._bonus_items, 0)

    # -- public API ------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def num_items(self) -> int:
        return len(self.item_names)

    @property
    def evaluation_due(self) -> bool:
        """With success_source="evaluation": True when an evaluation round should run now."""
        if self.success_source != "evaluation":
            return False
        return self.evaluations == 0 or self.steps_since_evaluation >= self.evaluation_interval_steps

    def config(self) -> dict[str, Any]:
        """``build_curriculum`` arguments that rebuild this scheduler (without its state)."""
        return {"kind": self.kind, "task_names": list(self.task_names), "item_names": list(self.item_names), **self._params}

    @property
    def has_state(self) -> bool:
        """Whether any episode has been absorbed (else `config()` alone describes it)."""
        return bool(self.episodes.any() or self.evaluation_episodes.any() or self.estimates.measurements.any())

    def update(self, outcomes: EpisodeOutcomes) -> None:
        """Absorb a batch of finished episodes. Validates first: a rejected batch changes nothing."""
        outcomes.validate(self.num_tasks, self.num_items if outcomes.items_obtained is not None else None)
        n = len(outcomes)
        if n == 0:
            return
        task = outcomes.task.astype(np.intp, copy=False)
        success = outcomes.success.astype(bool, copy=False)
        if outcomes.items_obtained is not None:
            # Summing the uint8 view is ~3x faster than count_nonzero(axis=0) on bool.
            self.item_obtained_episodes += outcomes.items_obtained.view(np.uint8).sum(0, dtype=np.int32)
        if outcomes.evaluation:
            self.evaluation_episodes += np.bincount(task, minlength=self.num_tasks)
            if self.success_source == "evaluation":
                # One measurement per task per evaluation round: its success rate.
                counts = np.bincount(task, minlength=self.num_tasks)
                wins = np.bincount(task, weights=success, minlength=self.num_tasks)
                tried = np.flatnonzero(counts)
                self.estimates.absorb(tried, wins[tried] / counts[tried])
                self.evaluations += 1
                self.steps_since_evaluation = 0
                self._dirty = True
            return
        weights, keep = recent_weights(n, RECENT_EPISODE_WEIGHT)
        if outcomes.items_obtained is not None:
            self.item_obtained_rate = keep * self.item_obtained_rate + weights @ outcomes.items_obtained.view(np.uint8)
            self._dirty = True
        bonus_return = outcomes.bonus_return if outcomes.bonus_return is not None else np.zeros(n)
        self.recent_env_return = keep * self.recent_env_return + float(weights @ outcomes.episode_return)
        self.recent_bonus_return = keep * self.recent_bonus_return + float(weights @ bonus_return)
        self.episodes += np.bincount(task, minlength=self.num_tasks)
        self.successes += np.bincount(task, weights=success, minlength=self.num_tasks).astype(np.int64)
        steps = int(outcomes.length.sum())
        self.env_steps += steps
        self.steps_since_evaluation += steps
        if self.success_source == "online":
            self.estimates.absorb(task, success.astype(np.float64))
            self._dirty = True

    def distribution(self) -> CurriculumDistribution:
        """The current distribution; recomputed lazily after updates, version bumped on change."""
        if self._dirty:
            self._dirty = False
            probabilities = self._compute_probabilities()
            bonus_items = self._compute_bonus_items()
            # Fresh arrays owned here: freeze them so the published copy needs no copying.
            probabilities.setflags(write=False)
            bonus_items.setflags(write=False)
            if not (
                np.array_equal(probabilities, self._probabilities)
                and np.array_equal(bonus_items, self._bonus_items)
            ):
                self._probabilities, self._bonus_items = probabilities, bonus_items
                self._version += 1
                self._distribution = CurriculumDistribution(probabilities, bonus_items, self._version)
        return self._distribution

    def learning_progress(self) -> np.ndarray:
        """Per-task learning progress (absolute unless `signed`)."""
        return self.estimates.learning_progress(self.theta, self.signed)

    def skip_versions(self, count: int) -> None:
        """Advance the version counter (used after a restore so old version numbers are never reused)."""
        self._version += int(count)
        self._distribution = CurriculumDistribution(self._probabilities, self._bonus_items, self._version)

    def metrics(self) -> dict[str, float]:
        """Per-task and summary figures, flat, ready for MLflow."""
        dist = self.distribution()
        est = self.estimates
        lp = self.learning_progress()
        out: dict[str, float] = {}
        for prefix, values in (
            ("success_rate", est.success_rate),
            ("p_fast", est.p_fast),
            ("p_slow", est.p_slow),
            ("learning_progress", lp),
            ("probability", dist.probabilities),
            ("episodes", self.episodes),
        ):
            out.update(zip((f"{prefix}/{t}" for t in self.task_names), values.astype(np.float64).tolist()))
        out["entropy"] = entropy(dist.probabilities)
        out["num_active_tasks"] = float(np.count_nonzero(dist.probabilities))
        out["num_bonus_items"] = float(np.count_nonzero(dist.bonus_items))
        out.update(self.bonus_metrics(dist.bonus_items))
        out["num_items_obtained_ever"] = float(np.count_nonzero(self.item_obtained_episodes))
        out["episodes_total"] = float(self.episodes.sum())
        out["env_steps"] = float(self.env_steps)
        out["evaluation_due"] = float(self.evaluation_due)
        out["version"] = float(dist.version)
        return out

    def bonus_metrics(self, bonus_items: np.ndarray) -> dict[str, float]:
        """What the exploration bonus does now: items that pay, and its share of recent returns."""
        total = self.recent_env_return + self.recent_bonus_return
        return {
            "bonus/paying_items": float(np.count_nonzero(bonus_items)),
            "bonus/paying_task_items": float(np.count_nonzero(bonus_items & self._item_is_task)),
            "bonus/return_per_episode": self.recent_bonus_return,
            "bonus/env_return_per_episode": self.recent_env_return,
            "bonus/share_of_return": self.recent_bonus_return / total if total > 0 else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: plain Python and numpy, picklable."""
        return {
            "kind": self.kind,
            "task_names": list(self.task_names),
            "item_names": list(self.item_names),
            "estimates": self.estimates.state_dict(),
            "episodes": self.episodes.copy(),
            "successes": self.successes.copy(),
            "evaluation_episodes": self.evaluation_episodes.copy(),
            "item_obtained_episodes": self.item_obtained_episodes.copy(),
            "item_obtained_rate": self.item_obtained_rate.copy(),
            "recent_env_return": self.recent_env_return,
            "recent_bonus_return": self.recent_bonus_return,
            "env_steps": self.env_steps,
            "steps_since_evaluation": self.steps_since_evaluation,
            "evaluations": self.evaluations,
            "version": self._version,
            "probabilities": self._probabilities.copy(),
            "bonus_items": self._bonus_items.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`; the task and item lists must match this scheduler's."""
        for key, mine in (("task_names", self.task_names), ("item_names", self.item_names)):
            theirs = tuple(state[key])
            if theirs != mine:
                missing = sorted(set(mine) - set(theirs))[:5]
                extra = sorted(set(theirs) - set(mine))[:5]
                raise ValueError(
                    f"state {key} do not match this curriculum ({len(theirs)} vs {len(mine)}; "
                    f"missing {missing}, unexpected {extra}, or a different order)"
                )
        self.estimates.load_state_dict(state["estimates"])
        self.episodes = np.array(state["episodes"], dtype=np.int64)
        self.successes = np.array(state["successes"], dtype=np.int64)
        self.evaluation_episodes = np.array(state["evaluation_episodes"], dtype=np.int64)
        self.item_obtained_episodes = np.array(state["item_obtained_episodes"], dtype=np.int64)
        # States written before these moving averages existed start them at zero.
        self.item_obtained_rate = np.array(state.get("item_obtained_rate", np.zeros(self.num_items)), dtype=np.float64)
        self.recent_env_return = float(state.get("recent_env_return", 0.0))
        self.recent_bonus_return = float(state.get("recent_bonus_return", 0.0))
        self.env_steps = int(state["env_steps"])
        self.steps_since_evaluation = int(state["steps_since_evaluation"])
        self.evaluations = int(state["evaluations"])
        self._version = int(state["version"])
        self._probabilities = np.array(state["probabilities"], dtype=np.float64)
        self._bonus_items = np.array(state["bonus_items"], dtype=bool)
        self._distribution = CurriculumDistribution(self._probabilities, self._bonus_items, self._version)
        # The config may differ from the one that wrote the state (e.g. a new
        # temperature on resume): recompute, bumping the version if it changes.
        self._dirty = True

    # -- for subclasses ----------------------------------------------------------------
    def _compute_probabilities(self) -> np.ndarray:
        raise NotImplementedError

    def _compute_bonus_items(self) -> np.ndarray:
        # An item's success rate as a goal; items that are not tasks have none (NaN).
        rate = np.full(self.num_items, np.nan)
        rate[self._item_is_task] = self.estimates.success_rate[self._item_task[self._item_is_task]]
        return self.bonus.bonus_items(rate, self._item_is_task, self.item_obtained_rate)

    def obtained_as_by_product(self) -> np.ndarray:
        """Bool per task: its goal has never succeeded, yet its item was obtained in some
        training episode (one with another goal, e.g. while earning the bonus)."""
        has_item = self._task_item >= 0
        obtained = np.zeros(self.num_tasks, dtype=bool)
        obtained[has_item] = self.item_obtained_episodes[self._task_item[has_item]] > 0
        return obtained & (self.successes == 0)

    def reweighted(self, p: np.ndarray) -> np.ndarray:
        """f(p) with this scheduler's theta."""
        return reweight(p, self.theta)


class UniformCurriculum(Curriculum):
    """Every task equally likely; still tracks success and LP so runs can be compared."""

    kind = "uniform"

    def _compute_probabilities(self) -> np.ndarray:
        return np.full(self.num_tasks, 1.0 / self.num_tasks)
