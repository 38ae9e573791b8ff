"""Supervised multi-task datasets: construction, ground truth, Parquet round trip and refusals."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tasks.supervised import (
    DatasetSchemaError,
    expected_schema,
    multi_digit,
    pareto_toy,
    read_dataset,
    write_dataset,
)


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return write_dataset("multi_digit", tmp_path_factory.mktemp("md"), seed=1, num_train=300, num_val=50, num_test=50)


def test_multi_digit_round_trip(digits_file) -> None:
    data = read_dataset(digits_file, name="multi_digit")
    assert data.task_space.names == ("left_digit", "right_digit")
    assert data.input_shape == (1, 12, 12) and data.output_dim == 10 and data.target == "classification"
    train = data.split("train")
    assert len(train) == 600 and {len(data.split("val")), len(data.split("test"))} == {100}
    # Every pair gives one row per task with the same image.
    assert (train.task[0::2] == 0).all() and (train.task[1::2] == 1).all()
    assert np.array_equal(train.example_id[0::2], train.example_id[1::2])
    assert np.array_equal(train.x[0::2], train.x[1::2])
    assert train.x.min() >= 0 and train.x.max() <= 1 and train.y.max() <= 9
    # Splits use different example ids.
    assert not set(train.example_id) & set(data.split("test").example_id)


def test_overlay_places_left_top_left_and_right_bottom_right() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((2, 8, 8)).astype(np.float32)
    labels = np.array([3, 7])
    canvas, left, right = multi_digit.overlay_pairs(images, labels, 50, shift=0, rng=rng)
    # No shift: both digits on the same 8x8 square, overlaid by pixelwise max.
    for i in range(50):
        a, b = images[labels.tolist().index(left[i])], images[labels.tolist().index(right[i])]
        assert np.array_equal(canvas[i], np.maximum(a, b))
    canvas, left, right = multi_digit.overlay_pairs(images, labels, 20, shift=16, rng=rng)
    assert canvas.shape == (20, 24, 24)
    # shift 16 > 2*8: the digits cannot overlap; the top-left 8x8 (jitter <= 8) holds the left digit.
    for i in range(20):
        nonzero = np.argwhere(canvas[i] > 0)
        assert nonzero.min() >= 0 and nonzero.max() < 24


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_multi_digit_from_mnist_idx_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    path = write_dataset("multi_digit", tmp_path / "out", seed=0, mnist_path=str(tmp_path), num_train=10, num_val=4, num_test=4)
    data = read_dataset(path)
    assert data.input_shape == (1, 36, 36)  # 28 + the default 8-pixel shift, as in MultiMNIST
    assert data.metadata["params"]["source"] == "mnist"
    assert multi_digit.read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz").shape == (20,)


def test_grouped_regression_stores_groups_that_the_data_shows(tmp_path) -> None:
    path = write_dataset("grouped_regression", tmp_path, seed=3, samples_per_task=400, noise=0.01)
    data = read_dataset(path, name="grouped_regression")
    groups = data.metadata["groups"]
    assert sorted(n for g in groups for n in g) == sorted(data.task_space.names)
    assert data.output_dim == 1 and data.target == "regression"
    # Least-squares slope of each task: tasks of one group agree, groups conflict.
    train = data.split("train")
    slopes = []
    for t in range(data.num_tasks):
        m = train.task == t
        coef, *_ = np.linalg.lstsq(train.x[m], train.y[m], rcond=None)
        slopes.append(coef / np.linalg.norm(coef))
    cos = np.array(slopes) @ np.array(slopes).T
    group_of = {n: g for g, names in enumerate(groups) for n in names}
    same = [cos[i, j] for i in range(9) for j in range(9) if i != j and group_of[data.task_space.names[i]] == group_of[data.task_space.names[j]]]
    other = [cos[i, j] for i in range(9) for j in range(9) if group_of[data.task_space.names[i]] != group_of[data.task_space.names[j]]]
    assert min(same) > 0.8 and max(other) < 0.0


def test_pareto_toy_front_is_attained_on_the_segment(tmp_path) -> None:
    data = read_dataset(write_dataset("pareto_toy", tmp_path), name="pareto_toy")
    centre = torch.tensor(data.split("train").x, dtype=torch.float64)
    assert centre.shape == (2, 20) and torch.allclose(centre.norm(dim=1), torch.ones(2, dtype=torch.float64))
    for s in (-1.0, -0.3, 0.0, 0.8):
        f = pareto_toy.objectives(s * centre[0], centre)
        assert pareto_toy.distance_to_front(f) < 1e-4
    # A point off the segment is dominated: strictly worse than its projection.
    off = 0.2 * centre[0] + 0.3 * torch.nn.functional.normalize(torch.arange(20.0, dtype=torch.float64) - 9.5, dim=0)
    assert (pareto_toy.objectives(off, centre) > pareto_toy.objectives(0.2 * centre[0], centre)).all()


def _rewrite(src, dst, mutate) -> None:
    table = pq.read_table(src)
    pq.write_table(mutate(table), dst)


def test_malformed_files_are_refused_naming_column_and_schema(digits_file, tmp_path) -> None:
    bad = tmp_path / "bad.parquet"
    _rewrite(digits_file, bad, lambda t: t.drop_columns(["y"]))
    with pytest.raises(DatasetSchemaError, match=r"column 'y' is missing[\s\S]*expected schema:[\s\S]*y: int64"):
        read_dataset(bad)
    _rewrite(digits_file, bad, lambda t: t.set_column(4, pa.field("y", pa.float32()), t.column("y").cast(pa.float32())))
    with pytest.raises(DatasetSchemaError, match="column 'y' has type float, expected int64"):
        read_dataset(bad)
    with pytest.raises(DatasetSchemaError, match="file holds dataset 'multi_digit', expected 'pareto_toy'"):
        read_dataset(digits_file, name="pareto_toy")
    _rewrite(digits_file, bad, lambda t: t.replace_schema_metadata(None))
    with pytest.raises(DatasetSchemaError, match=r"metadata is missing \['mto.dataset'"):
        read_dataset(bad)

    def out_of_range(t: pa.Table) -> pa.Table:
        meta = dict(t.schema.metadata)
        meta[b"mto.task_names"] = json.dumps(["left_digit"]).encode()
        return t.replace_schema_metadata(meta)

    _rewrite(digits_file, bad, out_of_range)
    with pytest.raises(DatasetSchemaError, match=r"column 'task' has ids outside \[0, 1\)"):
        read_dataset(bad)
    bad.write_text("not parquet")
    with pytest.raises(DatasetSchemaError, match="not a Parquet file"):
        read_dataset(bad)
    assert expected_schema(144, "classification").field("x").type == pa.list_(pa.float32(), 144)


def test_write_dataset_names_valid_choices(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"valid choices: \['grouped_regression', 'multi_digit', 'pareto_toy'\]"):
        write_dataset("cifar", tmp_path)
    with pytest.raises(ValueError, match="valid parameters"):
        write_dataset("pareto_toy", tmp_path, n=20)


def test_conversion_command_writes_and_checks_the_file(tmp_path, capsys) -> None:
    from tasks.supervised.__main__ import main

    main(["grouped_regression", str(tmp_path), "--seed", "2", "--param", "num_groups=2", "--param", "tasks_per_group=2"])
    assert "task_03" in capsys.readouterr().out
    assert read_dataset(tmp_path / "grouped_regression.parquet").metadata["params"]["num_groups"] == 2
