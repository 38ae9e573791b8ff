"""The multi-task training orchestrator: the only package that starts Ray.

`cli` and `config` sit on top and dispatch to one subpackage per kind of work, each owning its
Ray glue: `rl` (RLlib), `supervised` (Ray Train), `offline` (collection + CQL), `tune` (Ray
Tune searches). All of them use `runs` (run folders, MLflow, plots, progress); `runs` uses none
of them. Everything may use `tasks`, `policies` and `curricula`, which never import this package.

The Python API mirrors the command line (same validation, same MLflow runs, same code path):

    import orchestrator
    summary = orchestrator.train("configs/smoke.yaml", {"training.iterations": 1}, run_dir="runs")
    orchestrator.evaluate(summary.run_id, episodes=5)
    orchestrator.report(summary.run_id)

`ConfigError` is what `mto` exits with code 2 for (bad config, unknown run): catch it.
"""

import sys
import types

from orchestrator.cli import evaluate, report, train
from orchestrator.config import ConfigError
from orchestrator.runs import moved_modules as _moved_modules

__all__ = ["ConfigError", "evaluate", "report", "train"]

_moved_modules.install()  # checkpoints written before the subpackages name the old module paths


class _PackageKeepsItsAPI(types.ModuleType):
    """`orchestrator.train`, `.evaluate` and `.report` were module paths before the subpackages; an old
    checkpoint imports them (answered by `runs.moved_modules`), and Python's import then sets the
    package attribute of that name to the module, hiding the API function."""

    def __setattr__(self, name: str, value) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PackageKeepsItsAPI
