"""Old module paths of the flat `orchestrator/` package, for files saved before the subpackages.

RLlib checkpoints (and Tune's experiment state) pickle classes by module path, e.g. a
checkpoint names `orchestrator.rl_multitask.MultiTaskPPOLearner`. `install()` puts an import
hook in front that answers each old path with the module that now holds its code, so those
files load unchanged. `orchestrator.rl`, once a module and now a package, forwards its old
names from its own `__getattr__`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED_MODULES = {
    "orchestrator.curriculum_actor": "orchestrator.rl.curriculum_actor",
    "orchestrator.curriculum_wrapper": "orchestrator.rl.curriculum_wrapper",
    "orchestrator.evaluate": "orchestrator.rl.evaluate",
    "orchestrator.offline_config": "orchestrator.offline.config",
    "orchestrator.plots": "orchestrator.runs.plots",
    "orchestrator.progress": "orchestrator.runs.progress",
    "orchestrator.report": "orchestrator.runs.report",
    "orchestrator.rl_multitask": "orchestrator.rl.multitask",
    "orchestrator.supervised_run": "orchestrator.supervised.run",
    "orchestrator.tracking": "orchestrator.runs.tracking",
    "orchestrator.train": "orchestrator.rl.training",
    "orchestrator.tune_config": "orchestrator.tune.config",
    "orchestrator.tune_rl": "orchestrator.tune.rl_trials",
    "orchestrator.tune_search": "orchestrator.tune.search",
}


class _ExistingModule(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # already executed under its new name
        pass


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves an old module path to the module now at its new path (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _ExistingModule(new))


def install() -> None:
    """Put the finder on `sys.meta_path` once per process."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
