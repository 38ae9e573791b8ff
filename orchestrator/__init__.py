"""The multi-task training orchestrator: the only package that starts Ray.

`cli` and `config` sit on top and dispatch to one subpackage per kind of work, each owning its
Ray glue: `rl` (RLlib), `supervised` (Ray Train), `offline` (collection + CQL), `tune` (Ray
Tune searches). All of them use `runs` (run folders, MLflow, plots, progress); `runs` uses none
of them. Everything may use `tasks`, `policies` and `curricula`, which never import this package.
"""

from orchestrator.runs import moved_modules as _moved_modules

_moved_modules.install()  # checkpoints written before the subpackages name the old module paths
