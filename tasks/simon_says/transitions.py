"""Parquet datasets of Simon Says transitions: schema, streaming writer, checked reader, dataset card.

One row per transition (observation, action, reward, next observation, ...):

    task              int32                       index into the dataset's task names (the goal)
    obs               fixed_size_list<float32>[D] observation before the action (one-hot goal first)
    action            int32                       index into the env's action names
    reward            float32                     1 when the goal item was obtained at this step
    next_obs          fixed_size_list<float32>[D] observation after the action
    terminated        bool                        the goal was obtained (no bootstrapping past it)
    truncated         bool                        the episode ended for another reason (horizon)
    items_obtained    fixed_size_list<bool>[I]    items obtained for the first time this episode, at this step
    episode_id        int64                       unique per episode across all writers of a dataset
    step              int32                       step index within its episode (0 = first action)
    behaviour_policy  string                      what chose the action ("random", "scripted:0.8", ...)

A dataset is a folder partitioned by task (``task=<name>/part-<writer>.parquet``); each
writer streams row groups into its own part files, so no process holds the dataset whole.
``dataset_card.json`` at the root records how it was made. Schema metadata (``mto.*``)
carries the task names, item names and each task's item index, so every file describes itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.parquet_schema import column_mismatch

FORMAT_VERSION = "1"
CARD_FILE = "dataset_card.json"
METADATA_KEYS = ("mto.format_version", "mto.obs_dim", "mto.task_names", "mto.item_names", "mto.task_item_index")
COLUMNS = ("task", "obs", "action", "reward", "next_obs", "terminated", "truncated",
           "items_obtained", "episode_id", "step", "behaviour_policy")


class TransitionSchemaError(ValueError):
    """A Parquet file that is not a transition dataset of the expected layout; names the column."""


def transition_schema(obs_dim: int, num_items: int) -> pa.Schema:
    """The column layout for observations of ``obs_dim`` floats and ``num_items`` items."""
    if obs_dim < 1 or num_items < 1:
        raise ValueError(f"obs_dim and num_items must be >= 1, got {obs_dim}, {num_items}")
    return pa.schema([
        pa.field("task", pa.int32(), nullable=False),
        pa.field("obs", pa.list_(pa.float32(), obs_dim), nullable=False),
        pa.field("action", pa.int32(), nullable=False),
        pa.field("reward", pa.float32(), nullable=False),
        pa.field("next_obs", pa.list_(pa.float32(), obs_dim), nullable=False),
        pa.field("terminated", pa.bool_(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("items_obtained", pa.list_(pa.bool_(), num_items), nullable=False),
        pa.field("episode_id", pa.int64(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("behaviour_policy", pa.string(), nullable=False),
    ])


@dataclass
class TransitionBatch:
    """Transitions as numpy arrays, row i across every field (N rows)."""

    task: np.ndarray  # int64 [N]
    obs: np.ndarray  # float32 [N, D]
    action: np.ndarray  # int64 [N]
    reward: np.ndarray  # float32 [N]
    next_obs: np.ndarray  # float32 [N, D]
    terminated: np.ndarray  # bool [N]
    truncated: np.ndarray  # bool [N]
    items_obtained: np.ndarray  # bool [N, I]
    episode_id: np.ndarray  # int64 [N]
    step: np.ndarray  # int64 [N]
    behaviour_policy: np.ndarray  # object (str) [N]

    def __len__(self) -> int:
        return int(self.task.shape[0])

    def take(self, index: np.ndarray) -> TransitionBatch:
        """The rows at ``index`` (indices or a boolean mask)."""
        return TransitionBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concatenate(batches: Sequence[TransitionBatch]) -> TransitionBatch:
        if not batches:
            raise ValueError("concatenate needs at least one batch")
        return TransitionBatch(**{f.name: np.concatenate([getattr(b, f.name) for b in batches])
                                  for f in fields(TransitionBatch)})


def _metadata(task_names: Sequence[str], item_names: Sequence[str], task_item_index: Sequence[int],
              obs_dim: int) -> dict[str, str]:
    return {
        "mto.format_version": FORMAT_VERSION,
        "mto.obs_dim": str(int(obs_dim)),
        "mto.task_names": json.dumps(list(task_names)),
        "mto.item_names": json.dumps(list(item_names)),
        "mto.task_item_index": json.dumps([int(i) for i in task_item_index]),
    }


def batch_to_table(batch: TransitionBatch, schema: pa.Schema) -> pa.Table:
    """One Arrow table in the dataset schema (types cast exactly, no copies of the float data)."""
    n = len(batch)
    obs_dim = schema.field("obs").type.list_size
    num_items = schema.field("items_obtained").type.list_size

    def fixed(values: np.ndarray, dtype, width: int) -> pa.Array:
        flat = np.ascontiguousarray(values, dtype=dtype).reshape(n * width)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), width)

    columns = [
        pa.array(np.asarray(batch.task, dtype=np.int32)),
        fixed(batch.obs, np.float32, obs_dim),
        pa.array(np.asarray(batch.action, dtype=np.int32)),
        pa.array(np.asarray(batch.reward, dtype=np.float32)),
        fixed(batch.next_obs, np.float32, obs_dim),
        pa.array(np.asarray(batch.terminated, dtype=bool)),
        pa.array(np.asarray(batch.truncated, dtype=bool)),
        fixed(batch.items_obtained, bool, num_items),
        pa.array(np.asarray(batch.episode_id, dtype=np.int64)),
        pa.array(np.asarray(batch.step, dtype=np.int32)),
        pa.array(np.asarray(batch.behaviour_policy).astype(str), type=pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


class TransitionWriter:
    """Streams transitions into ``root/task=<name>/part-<writer_name>.parquet``, one row group
    per ``row_group_size`` rows of a task; at most one partial row group per task is held."""

    def __init__(self, root: str | Path, writer_name: str, task_names: Sequence[str], item_names: Sequence[str],
                 task_item_index: Sequence[int], obs_dim: int, row_group_size: int = 4096) -> None:
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be >= 1, got {row_group_size}")
        if len(task_item_index) != len(task_names):
            raise ValueError(f"task_item_index has {len(task_item_index)} entries for {len(task_names)} tasks")
        self.root = Path(root)
        self.writer_name = writer_name
        self.task_names = tuple(task_names)
        self.row_group_size = int(row_group_size)
        self.schema = transition_schema(obs_dim, len(item_names)).with_metadata(
            _metadata(task_names, item_names, task_item_index, obs_dim))
        self._pending: dict[int, list[TransitionBatch]] = {}
        self._pending_rows: dict[int, int] = {}
        self._writers: dict[int, pq.ParquetWriter] = {}
        self.rows_written = 0
        self.files: list[Path] = []

    def write(self, batch: TransitionBatch) -> None:
        """Queue ``batch``; full row groups go to disk at once."""
        if len(batch) == 0:
            return
        task = np.asarray(batch.task)
        if task.min() < 0 or task.max() >= len(self.task_names):
            raise ValueError(f"column 'task' has ids outside [0, {len(self.task_names)})")
        for t in np.unique(task):
            part = batch.take(task == t)
            t = int(t)
            self._pending.setdefault(t, []).append(part)
            self._pending_rows[t] = self._pending_rows.get(t, 0) + len(part)
            if self._pending_rows[t] >= self.row_group_size:
                self._flush(t, final=False)

    def _flush(self, t: int, final: bool) -> None:
        pending = self._pending.pop(t, [])
        self._pending_rows[t] = 0
        if not pending:
            return
        rows = TransitionBatch.concatenate(pending)
        cut = len(rows) if final else len(rows) - len(rows) % self.row_group_size
        if cut < len(rows):  # keep the tail for the next row group
            self._pending[t] = [rows.take(np.arange(cut, len(rows)))]
            self._pending_rows[t] = len(rows) - cut
        if cut == 0:
            return
        writer = self._writers.get(t)
        if writer is None:
            path = self.root / f"task={self.task_names[t]}" / f"part-{self.writer_name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = self._writers[t] = pq.ParquetWriter(path, self.schema)
            self.files.append(path)
        for start in range(0, cut, self.row_group_size):
            stop = min(start + self.row_group_size, cut)
            writer.write_table(batch_to_table(rows.take(np.arange(start, stop)), self.schema),
                               row_group_size=self.row_group_size)
        self.rows_written += cut

    def close(self) -> list[Path]:
        """Write what is left and close every file; returns the part files written."""
        for t in list(self._pending):
            self._flush(t, final=True)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        return self.files

    def __enter__(self) -> TransitionWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's files say about themselves."""

    task_names: tuple[str, ...]
    item_names: tuple[str, ...]
    task_item_index: np.ndarray  # int64 [T]: item index of each task's goal
    obs_dim: int
    files: tuple[Path, ...]

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


def _refuse(path: Path, problem: str, schema: pa.Schema | None = None) -> TransitionSchemaError:
    expected = f"\nexpected schema:\n{schema.remove_metadata()}" if schema is not None else ""
    return TransitionSchemaError(f"{path}: {problem}{expected}")


def _check_file(path: Path) -> tuple[pa.Schema, dict[str, str]]:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _refuse(path, f"not a Parquet file ({exc})") from None
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    for key in METADATA_KEYS:
        if key not in meta:
            raise _refuse(path, f"schema metadata is missing {key!r} (needs {list(METADATA_KEYS)})")
    try:
        expected = transition_schema(int(meta["mto.obs_dim"]), len(json.loads(meta["mto.item_names"])))
    except ValueError as exc:
        raise _refuse(path, f"unreadable metadata mto.obs_dim / mto.item_names ({exc})") from None
    problem = column_mismatch(schema, expected)
    if problem is not None:
        raise _refuse(path, problem, expected)
    return expected, meta


def dataset_files(root: str | Path, tasks: Sequence[str] | None = None) -> list[Path]:
    """The part files of a dataset folder (or a single file), in task then name order."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no transition dataset at {root}")
    dirs = sorted(root.glob("task=*"))
    if tasks is not None:
        wanted = {f"task={t}" for t in tasks}
        dirs = [d for d in dirs if d.name in wanted]
    return [f for d in dirs for f in sorted(d.glob("*.parquet"))]


def dataset_info(root: str | Path) -> DatasetInfo:
    """Check every part file's schema and that they agree; raises TransitionSchemaError naming the column."""
    files = dataset_files(root)
    if not files:
        raise FileNotFoundError(f"{root}: no part files (task=*/*.parquet)")
    first_meta: dict[str, str] | None = None
    obs_dim = 0
    for path in files:
        expected, meta = _check_file(path)
        if first_meta is None:
            first_meta, obs_dim = meta, expected.field("obs").type.list_size
        elif any(meta[k] != first_meta[k] for k in METADATA_KEYS[1:]):
            raise _refuse(path, f"observation width, task or item names differ from {files[0]}")
    assert first_meta is not None
    return DatasetInfo(
        task_names=tuple(json.loads(first_meta["mto.task_names"])),
        item_names=tuple(json.loads(first_meta["mto.item_names"])),
        task_item_index=np.asarray(json.loads(first_meta["mto.task_item_index"]), dtype=np.int64),
        obs_dim=int(obs_dim),
        files=tuple(files),
    )


def table_to_batch(table: pa.Table) -> TransitionBatch:
    """Arrow table in the dataset schema -> numpy arrays."""
    n = table.num_rows

    def fixed(name: str) -> np.ndarray:
        col = table.column(name).combine_chunks()
        return col.flatten().to_numpy(zero_copy_only=False).reshape(n, col.type.list_size)

    def flat(name: str, dtype) -> np.ndarray:
        return table.column(name).to_numpy().astype(dtype, copy=False)

    return TransitionBatch(
        task=flat("task", np.int64), obs=fixed("obs"), action=flat("action", np.int64),
        reward=flat("reward", np.float32), next_obs=fixed("next_obs"),
        terminated=flat("terminated", bool), truncated=flat("truncated", bool),
        items_obtained=fixed("items_obtained").astype(bool, copy=False),
        episode_id=flat("episode_id", np.int64), step=flat("step", np.int64),
        behaviour_policy=table.column("behaviour_policy").to_numpy(zero_copy_only=False).astype(object, copy=False),
    )


def read_transitions(root: str | Path, tasks: Sequence[str] | None = None) -> tuple[TransitionBatch, DatasetInfo]:
    """Read a whole dataset (or the partitions of ``tasks``) after checking every file's schema."""
    info = dataset_info(root)
    unknown = sorted(set(tasks or ()) - set(info.task_names))
    if unknown:
        raise ValueError(f"tasks {unknown} are not in this dataset; it has {list(info.task_names)}")
    batches = [table_to_batch(pq.read_table(f, columns=list(COLUMNS))) for f in dataset_files(root, tasks)]
    if not batches:
        raise FileNotFoundError(f"{root}: no part files for tasks {list(tasks or [])}")
    return TransitionBatch.concatenate(batches), info


def iter_transitions(root: str | Path, batch_size: int = 8192) -> Iterator[TransitionBatch]:
    """Stream a dataset in batches of at most ``batch_size`` rows (one row group in memory at a time)."""
    info = dataset_info(root)
    for path in info.files:
        with pq.ParquetFile(path) as f:
            for record_batch in f.iter_batches(batch_size=batch_size, columns=list(COLUMNS)):
                yield table_to_batch(pa.Table.from_batches([record_batch]))


@dataclass
class DatasetCard:
    """How a dataset was made (written as ``dataset_card.json`` next to the partitions)."""

    task_names: list[str]
    item_names: list[str]
    task_item_index: list[int]
    obs_dim: int
    num_actions: int
    horizon: int
    backend: str
    seed: int
    behaviour: list[dict[str, Any]]  # one entry per behaviour source: policy, skill, tasks, transitions
    transitions: int = 0
    episodes: int = 0
    transitions_per_task: dict[str, int] = field(default_factory=dict)
    collection_seconds: float = 0.0
    transitions_per_second: float = 0.0
    format_version: str = FORMAT_VERSION
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def write(self, root: str | Path) -> Path:
        path = Path(root) / CARD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, root: str | Path) -> DatasetCard:
        path = Path(root) / CARD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{root}: no {CARD_FILE}; is this a transition dataset folder?")
        data = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)


__all__ = [
    "CARD_FILE",
    "COLUMNS",
    "DatasetCard",
    "DatasetInfo",
    "TransitionBatch",
    "TransitionSchemaError",
    "TransitionWriter",
    "batch_to_table",
    "dataset_files",
    "dataset_info",
    "iter_transitions",
    "read_transitions",
    "table_to_batch",
    "transition_schema",
]
