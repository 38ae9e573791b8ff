"""Checkpoint folders on disk: written whole or not at all, checked before a resume trusts them.

A checkpoint is assembled in a hidden staging folder next to the others and renamed into
place only once every file (and its `manifest.json`: size and SHA-256 of each file) is
written, so a crash or a full disk mid-write never leaves a half checkpoint under a real
name and never touches the previous one. `--resume` checks the newest checkpoint against
its manifest, names the first bad file, sets a bad checkpoint aside (renamed, never
deleted or overwritten) and falls back to the previous good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

from orchestrator.config import ConfigError

MANIFEST_FILE = "manifest.json"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_NAME = re.compile(r"^iter_\d{6}$")
BAD_SUFFIX = ".bad"
# The parts a resume reads; a checkpoint without a manifest (written before manifests
# existed) must at least have these.
REQUIRED_PARTS = ("algorithm", "curriculum.pkl")


class TrainingInterrupted(SystemExit):
    """Raised after a SIGTERM once the final checkpoint is written; exits with 128 + SIGTERM."""

    def __init__(self, message: str) -> None:
        super().__init__(143)
        self.message = message


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:06d}"


def checkpoint_dirs(run_path: Path) -> list[Path]:
    """The run's finished checkpoints, oldest first (staging folders and set-aside ones excluded)."""
    root = Path(run_path) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and CHECKPOINT_NAME.match(p.name))


def staging_dir(final: Path) -> Path:
    """Where checkpoint ``final`` is assembled (hidden, so listings and pruning never see it)."""
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record size and SHA-256 of every file under ``folder``; written last, atomically."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    entries = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    tmp = folder / (MANIFEST_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"format": 1, "files": entries}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())  # the manifest vouches for the files: it must reach the disk
    os.replace(tmp, folder / MANIFEST_FILE)


def checkpoint_problem(folder: Path) -> str | None:
    """None if ``folder`` is a complete checkpoint, else what is wrong, naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} does not exist"
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        missing = [part for part in REQUIRED_PARTS if not (folder / part).exists()]
        return f"{folder / missing[0]} is missing" if missing else None
    try:
        entries = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        return f"{manifest} is unreadable ({type(exc).__name__}: {exc})"
    for rel, want in entries.items():
        path = folder / rel
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != want["size"]:
            return f"{path} is truncated or changed ({size} bytes, {want['size']} written)"
        if _sha256(path) != want["sha256"]:
            return f"{path} is corrupted (SHA-256 differs from the one written)"
    return None


def usable_checkpoint(run_path: Path, newest: Path, what: str) -> Path:
    """The checkpoint to resume from: ``newest`` if it is good, else the newest good one in the
    run folder. Bad checkpoints are named on stderr and renamed ``<name>.bad`` (kept for
    inspection; a new checkpoint of that iteration never overwrites them). Raises
    `ConfigError` (exit 2, nothing renamed) when none is good.
    """
    newest = Path(newest)
    candidates = [newest] + [p for p in reversed(checkpoint_dirs(run_path)) if p != newest]
    bad: list[tuple[Path, str]] = []
    for folder in candidates:
        problem = checkpoint_problem(folder)
        if problem is None:
            break
        bad.append((folder, problem))
    else:
        reasons = "; ".join(problem for _, problem in bad)
        raise ConfigError(f"{what}: no usable checkpoint in {Path(run_path) / CHECKPOINTS_DIR}: {reasons}")
    for folder_bad, problem in bad:
        print(f"{what}: checkpoint {folder_bad.name} is bad: {problem}", file=sys.stderr)
        if folder_bad.is_dir():
            folder_bad.rename(folder_bad.with_name(folder_bad.name + BAD_SUFFIX))
    if bad:
        print(f"{what}: falling back to checkpoint {folder.name}", file=sys.stderr)
    return folder
