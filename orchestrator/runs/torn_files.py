"""Reading back files a crash may have torn: keep the complete records, set the rest aside.

A kill or a full disk in the middle of an append leaves a half-written last line; a damaged
disk can leave any file short. Whatever the product reads back after a crash goes through
here, so a torn tail costs only itself: the complete records are used, the torn bytes are
moved to ``<name>.torn`` beside the file (kept for inspection, never deleted), and one
warning says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from orchestrator.runs.progress import console


def torn_path(path: Path) -> Path:
    """Where the torn part of ``path`` is set aside."""
    return path.with_name(path.name + ".torn")


def warn_torn(path: Path, what: str) -> None:
    """The one warning for a torn file."""
    console.print(f"[yellow]{path} was torn (a crash or a full disk mid-write)[/]: {what}")


def read_json_lines(path: Path, complete: Callable[[dict[str, Any]], bool] = lambda record: True
                    ) -> list[dict[str, Any]]:
    """The complete JSON-object lines of ``path`` (none if it is missing), in order; ``complete``
    says whether a parsed object holds everything a record needs.

    Lines that do not parse (the torn tail, or garbage from a damaged disk) are appended to
    ``<name>.torn`` and removed from ``path`` (rewritten atomically), with one warning.
    """
    if not path.is_file():
        return []
    raw = path.read_bytes()
    records: list[dict[str, Any]] = []
    good: list[bytes] = []
    bad: list[bytes] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            record = None
        if isinstance(record, dict) and complete(record):
            records.append(record)
            good.append(line)
        else:
            bad.append(line)
    if bad or (raw and not raw.endswith(b"\n")):
        _set_aside_lines(path, good, bad)
    return records


def _set_aside_lines(path: Path, good: list[bytes], bad: list[bytes]) -> None:
    if bad:
        with open(torn_path(path), "ab") as f:
            f.write(b"\n".join(bad) + b"\n")
        warn_torn(path, f"{len(good)} complete record(s) kept, {len(bad)} incomplete line(s) set aside in "
                        f"{torn_path(path)}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in good))
    os.replace(tmp, path)  # a crash here leaves the old file or the clean one, never half
