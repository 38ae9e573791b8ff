"""``TaskSpace``: the ordered task names of a task family, plus optional per-task depth."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


class MissingExtraError(ImportError):
    """A backend whose optional dependency is not installed; the message names the extra."""


class UnknownTaskError(ValueError):
    """A task name that is not in the task space; the message suggests close matches."""


def suggest(name: str, choices: Iterable[str], n: int = 5) -> str:
    """A ``did you mean`` phrase for ``name`` among ``choices`` (empty when nothing is close)."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


@dataclass(frozen=True)
class TaskSpace:
    """Ordered task names; ``depth[i]`` (optional) is task i's prerequisite depth."""

    names: tuple[str, ...]
    depth: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        if len(set(self.names)) != len(self.names):
            dupes = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"TaskSpace names must be unique; repeated: {dupes}")
        if self.depth is not None:
            object.__setattr__(self, "depth", tuple(int(d) for d in self.depth))
            if len(self.depth) != len(self.names):
                raise ValueError(
                    f"TaskSpace depth has {len(self.depth)} entries for {len(self.names)} names")
        # A name -> index table built once; frozen dataclasses allow it via object.__setattr__.
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.names)})

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index  # type: ignore[attr-defined]

    def index(self, name: str) -> int:
        """Position of ``name``; raises :class:`UnknownTaskError` with suggestions."""
        try:
            return self._index[name]  # type: ignore[attr-defined]
        except (KeyError, TypeError):
            raise UnknownTaskError(
                f"unknown task {name!r}{suggest(str(name), self.names)} "
                f"({len(self.names)} tasks in this space)") from None

    def indices(self, names: Iterable[str]) -> np.ndarray:
        """Positions of ``names`` as an int64 array."""
        return np.fromiter((self.index(n) for n in names), dtype=np.int64)

    def subset(self, names: Iterable[str]) -> TaskSpace:
        """The tasks ``names`` (in the given order), keeping their depths."""
        idx = self.indices(names)
        depth = None if self.depth is None else tuple(self.depth[i] for i in idx)
        return TaskSpace(tuple(self.names[i] for i in idx), depth)
