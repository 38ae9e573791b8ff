"""Where a run may load code from: only inside the run folder it owns, under the run directory the
user gave. A checkpoint is pickled Python (RLlib's `class_and_ctor_args.pkl`, `curriculum.pkl`,
`sharing_state.pkl`), so loading one runs its code; an MLflow tag or a state file that anyone with
write access to the tracking store or the disk can change must not choose which one is loaded."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import ConfigError


def is_inside(path: str | Path, root: str | Path) -> bool:
    """True if ``path`` lies strictly below ``root`` once both are resolved (symlinks and `..` followed)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    return resolved != base and resolved.is_relative_to(base)


def require_inside(path: str | Path, root: str | Path, what: str, named_by: str, hint: str = "") -> Path:
    """``path`` resolved, or `ConfigError` (exit 2) naming it when it is not below ``root``.

    ``named_by`` says who chose the path (a tag, a state file), ``hint`` what the user can do instead.
    """
    if not str(path) or not is_inside(path, root):
        raise ConfigError(f"{what}: refusing to load {str(path) or '(an empty path)'}, which {named_by}: it is not "
                          f"inside {Path(root).resolve()}{'; ' + hint if hint else ''}")
    return Path(path).resolve()
