"""The one Parquet layout every supervised multi-task dataset uses, and its checks.

Long format, one row per (example, task):

    example_id  int64                       the same id on rows that share an input
    split       string                      "train" | "val" | "test"
    task        int32                       index into the task names
    x           fixed_size_list<float32>[D] the input, flattened (D = prod(input_shape))
    y           int64 (classification) | float32 (regression / objective)

The schema metadata (keys ``mto.*``) carries the dataset name, task names,
input shape, target kind, class count, generation parameters and any ground
truth (e.g. planted task groups), so a file describes itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.parquet_schema import column_mismatch
from tasks.task_space import TaskSpace

FORMAT_VERSION = "1"
SPLITS = ("train", "val", "test")
TARGETS = ("classification", "regression", "objective")
REQUIRED_METADATA = ("mto.dataset", "mto.format_version", "mto.task_names", "mto.input_shape", "mto.target")


class DatasetSchemaError(ValueError):
    """A Parquet file that is not a dataset of the expected shape; says what and what was expected."""


def expected_schema(input_dim: int, target: str) -> pa.Schema:
    """The column layout for inputs of ``input_dim`` floats and a ``target`` kind."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid choices: {list(TARGETS)}")
    y_type = pa.int64() if target == "classification" else pa.float32()
    return pa.schema(
        [
            pa.field("example_id", pa.int64(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("task", pa.int32(), nullable=False),
            pa.field("x", pa.list_(pa.float32(), input_dim), nullable=False),
            pa.field("y", y_type, nullable=False),
        ]
    )


@dataclass(frozen=True)
class SplitArrays:
    """One split as numpy arrays (row i: input x[i] of task task[i] with target y[i])."""

    x: np.ndarray  # float32 [N, D]
    task: np.ndarray  # int64 [N]
    y: np.ndarray  # int64 or float32 [N]
    example_id: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return int(self.task.shape[0])


@dataclass(frozen=True)
class SupervisedDataset:
    """A dataset read back from Parquet: task space, input shape, target kind and splits."""

    name: str
    task_space: TaskSpace
    input_shape: tuple[int, ...]
    target: str
    num_classes: int | None
    splits: dict[str, SplitArrays]
    metadata: dict[str, Any] = field(default_factory=dict)  # params, ground truth ...

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_dim(self) -> int:
        """Network outputs per task: class logits, or one value."""
        return self.num_classes if self.target == "classification" and self.num_classes else 1

    @property
    def num_tasks(self) -> int:
        return len(self.task_space)

    def split(self, name: str) -> SplitArrays:
        if name not in self.splits:
            raise ValueError(f"unknown split {name!r}; this dataset has {sorted(self.splits)}")
        return self.splits[name]


def write_table(
    path: str | Path,
    *,
    name: str,
    task_names: tuple[str, ...],
    input_shape: tuple[int, ...],
    target: str,
    example_id: np.ndarray,
    split: np.ndarray,
    task: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write one dataset file in the layout above; returns its path."""
    input_dim = math.prod(input_shape)
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(len(task), input_dim)
    schema = expected_schema(input_dim, target)
    metadata = {
        "mto.dataset": name,
        "mto.format_version": FORMAT_VERSION,
        "mto.task_names": json.dumps(list(task_names)),
        "mto.input_shape": json.dumps(list(input_shape)),
        "mto.target": target,
    }
    if num_classes is not None:
        metadata["mto.num_classes"] = str(int(num_classes))
    for key, value in (extra_metadata or {}).items():
        metadata[f"mto.{key}"] = json.dumps(value)
    columns = [
        pa.array(np.asarray(example_id, dtype=np.int64)),
        pa.array(np.asarray(split).astype(str), type=pa.string()),
        pa.array(np.asarray(task, dtype=np.int32)),
        pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), input_dim),
        pa.array(np.asarray(y, dtype=np.int64 if target == "classification" else np.float32)),
    ]
    table = pa.Table.from_arrays(columns, schema=schema.with_metadata(metadata))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _refuse(path: Path, problem: str, schema: pa.Schema | None) -> DatasetSchemaError:
    expected = f"\nexpected schema:\n{schema.remove_metadata()}" if schema is not None else ""
    needs = f"\nrequired schema metadata keys: {list(REQUIRED_METADATA)}"
    return DatasetSchemaError(f"{path}: {problem}{expected}{needs}")


def read_dataset(path: str | Path, name: str | None = None) -> SupervisedDataset:
    """Read and validate a dataset file; a malformed or mismatched file raises DatasetSchemaError.

    ``name`` (optional) is the dataset the caller expects (e.g. "multi_digit").
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset file at {path}")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _refuse(path, f"not a Parquet file ({exc})", None) from None
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise _refuse(path, f"schema metadata is missing {missing}", None)
    if name is not None and meta["mto.dataset"] != name:
        raise _refuse(path, f"file holds dataset {meta['mto.dataset']!r}, expected {name!r}", None)
    try:
        task_names = tuple(json.loads(meta["mto.task_names"]))
        input_shape = tuple(int(d) for d in json.loads(meta["mto.input_shape"]))
    except (ValueError, TypeError) as exc:
        raise _refuse(path, f"unreadable metadata mto.task_names / mto.input_shape ({exc})", None) from None
    target = meta["mto.target"]
    if target not in TARGETS:
        raise _refuse(path, f"metadata mto.target={target!r}; valid choices: {list(TARGETS)}", None)
    expected = expected_schema(math.prod(input_shape), target)
    problem = column_mismatch(schema, expected)
    if problem is not None:
        raise _refuse(path, problem, expected)

    try:
        table = pq.read_table(path, columns=expected.names)
    except (pa.ArrowException, OSError) as exc:
        # The footer parsed but a data page did not (a damaged copy): refuse it, naming the file.
        raise _refuse(path, f"unreadable data ({type(exc).__name__}: {exc})", expected) from None
    if table.num_rows == 0:
        raise _refuse(path, "the file holds no rows", expected)
    if any(table.column(c).null_count for c in expected.names):
        bad = [c for c in expected.names if table.column(c).null_count]
        raise _refuse(path, f"column(s) {bad} contain nulls", expected)
    task = table.column("task").to_numpy().astype(np.int64)
    if task.size and (task.min() < 0 or task.max() >= len(task_names)):
        raise _refuse(path, f"column 'task' has ids outside [0, {len(task_names)})", expected)
    num_classes = int(meta["mto.num_classes"]) if "mto.num_classes" in meta else None
    y = table.column("y").to_numpy()
    if target == "classification":
        if num_classes is None:
            raise _refuse(path, "classification data needs metadata mto.num_classes", expected)
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise _refuse(path, f"column 'y' has labels outside [0, {num_classes})", expected)
    split = np.asarray(table.column("split").to_pylist())
    unknown = sorted(set(np.unique(split)) - set(SPLITS))
    if unknown:
        raise _refuse(path, f"column 'split' has values {unknown}; valid: {list(SPLITS)}", expected)
    x = table.column("x").combine_chunks().flatten().to_numpy().reshape(len(task), -1)
    example_id = table.column("example_id").to_numpy()
    splits = {
        s: SplitArrays(x=x[m], task=task[m], y=y[m], example_id=example_id[m])
        for s in SPLITS
        if (m := split == s).any()
    }
    extra = {k[4:]: json.loads(v) for k, v in meta.items() if k.startswith("mto.") and k not in REQUIRED_METADATA and k != "mto.num_classes"}
    return SupervisedDataset(
        name=meta["mto.dataset"],
        task_space=TaskSpace(task_names),
        input_shape=input_shape,
        target=target,
        num_classes=num_classes,
        splits=splits,
        metadata=extra,
    )
