"""Meta-World's MT10 and MT50 task sets (names in Meta-World's own order) and a sentence per task.

The names are plain data, so configs validate without the extra; building an env
needs ``metaworld`` (``pip install 'mto[metaworld]'``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks.metadata import DEFAULT_DIM, metadata_matrix
from tasks.task_space import MissingExtraError, TaskSpace, UnknownTaskError, suggest

# metaworld.env_dict.MT10_V3 / MT50_V3 key order (metaworld 3.x); the one-hot follows it.
MT10: tuple[str, ...] = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
)
MT50: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3", "button-press-topdown-v3",
    "button-press-topdown-wall-v3", "button-press-v3", "button-press-wall-v3", "coffee-button-v3",
    "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3",
    "door-open-v3", "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3", "handle-press-v3",
    "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3", "pick-out-of-hole-v3",
    "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3", "plate-slide-back-v3",
    "plate-slide-back-side-v3", "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3",
    "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3", "reach-v3", "reach-wall-v3",
    "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3", "window-close-v3",
)
TASK_SETS: dict[str, tuple[str, ...]] = {"MT10": MT10, "MT50": MT50}

# One sentence per task (after the task descriptions of the Meta-World paper, Yu et al. 2019,
# appendix), the metadata CARE attends over.
DESCRIPTIONS: dict[str, str] = {
    "assembly-v3": "pick up a nut and place it onto a peg",
    "basketball-v3": "dunk the basketball into the basket",
    "bin-picking-v3": "grasp the puck from one bin and place it into another bin",
    "box-close-v3": "grasp the cover and close the box with it",
    "button-press-topdown-v3": "press a button from the top",
    "button-press-topdown-wall-v3": "bypass a wall and press a button from the top",
    "button-press-v3": "press a button",
    "button-press-wall-v3": "bypass a wall and press a button",
    "coffee-button-v3": "push a button on the coffee machine",
    "coffee-pull-v3": "pull a mug from a coffee machine",
    "coffee-push-v3": "push a mug under a coffee machine",
    "dial-turn-v3": "rotate a dial 180 degrees",
    "disassemble-v3": "pick a nut out of a peg",
    "door-close-v3": "close a door with a revolving joint",
    "door-lock-v3": "lock the door by rotating the lock clockwise",
    "door-open-v3": "open a door with a revolving joint",
    "door-unlock-v3": "unlock the door by rotating the lock counter clockwise",
    "hand-insert-v3": "insert the gripper into a hole",
    "drawer-close-v3": "push and close a drawer",
    "drawer-open-v3": "open a drawer",
    "faucet-open-v3": "rotate the faucet counter clockwise",
    "faucet-close-v3": "rotate the faucet clockwise",
    "hammer-v3": "hammer a screw on the wall",
    "handle-press-side-v3": "press a handle down sideways",
    "handle-press-v3": "press a handle down",
    "handle-pull-side-v3": "pull a handle up sideways",
    "handle-pull-v3": "pull a handle up",
    "lever-pull-v3": "pull a lever down 90 degrees",
    "pick-place-wall-v3": "pick a puck, bypass a wall and place the puck",
    "pick-out-of-hole-v3": "pick up a puck from a hole",
    "pick-place-v3": "pick and place a puck to a goal",
    "plate-slide-v3": "slide a plate into a cabinet",
    "plate-slide-side-v3": "slide a plate into a cabinet sideways",
    "plate-slide-back-v3": "get a plate from the cabinet",
    "plate-slide-back-side-v3": "get a plate from the cabinet sideways",
    "peg-insert-side-v3": "insert a peg sideways",
    "peg-unplug-side-v3": "unplug a peg sideways",
    "soccer-v3": "kick a soccer ball into the goal",
    "stick-push-v3": "grasp a stick and push a box using the stick",
    "stick-pull-v3": "grasp a stick and pull a box with the stick",
    "push-v3": "push the puck to a goal",
    "push-wall-v3": "bypass a wall and push a puck to a goal",
    "push-back-v3": "pull a puck to a goal",
    "reach-v3": "reach a goal position",
    "reach-wall-v3": "bypass a wall and reach a goal",
    "shelf-place-v3": "pick and place a puck onto a shelf",
    "sweep-into-v3": "sweep a puck into a hole",
    "sweep-v3": "sweep a puck off the table",
    "window-open-v3": "push and open a window",
    "window-close-v3": "push and close a window",
}


def make_task_space(task_set: str = "MT10", tasks: Sequence[str] | None = None) -> TaskSpace:
    """The tasks of ``task_set`` (``MT10`` / ``MT50``), or the subset ``tasks`` of it, in set order."""
    if task_set not in TASK_SETS:
        raise ValueError(f"unknown Meta-World task set {task_set!r}; valid: {sorted(TASK_SETS)}")
    space = TaskSpace(TASK_SETS[task_set])
    if tasks is None:
        return space
    for name in tasks:
        if name not in space:
            raise UnknownTaskError(f"unknown task {name!r} in {task_set}{suggest(str(name), space.names)}")
    wanted = set(tasks)
    return space.subset([n for n in space.names if n in wanted])


def task_metadata(names: Sequence[str], dim: int = DEFAULT_DIM) -> np.ndarray:
    """``float32 [tasks, dim]``: each task's sentence, hashed bag of words (CARE's metadata)."""
    return metadata_matrix([DESCRIPTIONS[n] for n in names], dim)


def require_metaworld():
    """The ``metaworld`` module, or :class:`MissingExtraError` naming the extra to install."""
    try:
        import metaworld
    except ImportError as exc:
        raise MissingExtraError(
            f"the Meta-World task family needs the 'metaworld' extra: pip install 'mto[metaworld]' ({exc})"
        ) from None
    return metaworld


__all__ = ["DESCRIPTIONS", "MT10", "MT50", "TASK_SETS", "make_task_space", "require_metaworld", "task_metadata"]
