"""Supervised multi-task datasets stored as Parquet (pyarrow), no Ray inside.

``write_dataset(name, out_dir, seed, **params)`` writes ``out_dir/<name>.parquet``;
``read_dataset(path, name=None)`` reads it back, refusing a malformed or
mismatched file with the column and the expected schema.
Datasets: ``multi_digit``, ``grouped_regression``, ``pareto_toy``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from tasks.supervised import grouped_regression, multi_digit, pareto_toy
from tasks.supervised.schema import (
    DatasetSchemaError,
    SplitArrays,
    SupervisedDataset,
    expected_schema,
    read_dataset,
)

DATASETS: dict[str, Callable[..., Path]] = {
    multi_digit.NAME: multi_digit.generate,
    grouped_regression.NAME: grouped_regression.generate,
    pareto_toy.NAME: pareto_toy.generate,
}


def write_dataset(name: str, out_dir: str | Path, seed: int = 0, **params: object) -> Path:
    """Generate dataset ``name`` and write ``out_dir/<name>.parquet``; returns the path."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {sorted(DATASETS)}")
    generate = DATASETS[name]
    valid = sorted(k for k in inspect.signature(generate).parameters if k not in {"out_path", "seed"})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for dataset {name!r}; valid parameters: {valid}")
    return generate(Path(out_dir) / f"{name}.parquet", seed=seed, **params)


__all__ = [
    "DATASETS",
    "DatasetSchemaError",
    "SplitArrays",
    "SupervisedDataset",
    "expected_schema",
    "grouped_regression",
    "multi_digit",
    "pareto_toy",
    "read_dataset",
    "write_dataset",
]
