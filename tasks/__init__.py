"""Task families (environments and datasets). Nothing here imports Ray or the orchestrator."""

from tasks.task_space import TaskSpace, UnknownTaskError

__all__ = ["TaskSpace", "UnknownTaskError"]
