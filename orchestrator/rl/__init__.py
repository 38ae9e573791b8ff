"""Multi-task RL on RLlib's new API stack: the PPO assembly and env creator (`algorithm`), the
multi-task learner and RLModule (`multitask`), the CurriculumActor and the env-side curriculum
wrapper, the training loop behind `mto train` (`training`) and `mto eval` (`evaluate`)."""

from __future__ import annotations

import importlib
from typing import Any


_SUBMODULES = {"algorithm", "curriculum_actor", "curriculum_wrapper", "evaluate", "multitask", "training"}


def __getattr__(name: str) -> Any:
    # Before the subpackages, `orchestrator.rl` was the module now at `orchestrator.rl.algorithm`;
    # objects pickled under that path (e.g. in Tune experiment state) still resolve.
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(name)
    algorithm = importlib.import_module("orchestrator.rl.algorithm")
    try:
        return getattr(algorithm, name)
    except AttributeError:
        raise AttributeError(f"module 'orchestrator.rl' has no attribute {name!r}") from None
