"""Transition datasets on Parquet: bit-identical round trip, row groups, schema errors, dataset card."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.simon_says.transitions import (
    DatasetCard,
    TransitionBatch,
    TransitionSchemaError,
    TransitionWriter,
    dataset_info,
    iter_transitions,
    read_transitions,
)

TASKS = ("log", "planks", "stick")
ITEMS = ("apple", "log", "planks", "stick", "dirt")
TASK_ITEM_INDEX = [1, 2, 3]
OBS_DIM = 7


def _random_batch(n: int, seed: int = 0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return TransitionBatch(
        task=rng.integers(0, 3, n), obs=rng.standard_normal((n, OBS_DIM)).astype(np.float32),
        action=rng.integers(0, 50, n), reward=rng.integers(0, 2, n).astype(np.float32),
        next_obs=rng.standard_normal((n, OBS_DIM)).astype(np.float32),
        terminated=rng.random(n) < 0.1, truncated=rng.random(n) < 0.05,
        items_obtained=rng.random((n, len(ITEMS))) < 0.2, episode_id=rng.integers(0, 2**40, n),
        step=rng.integers(0, 300, n), behaviour_policy=np.array(["random", "scripted:0.8"], dtype=object)[rng.integers(0, 2, n)])


def _write(root, batches, row_group_size=16, name="w0"):
    with TransitionWriter(root, name, TASKS, ITEMS, TASK_ITEM_INDEX, OBS_DIM, row_group_size) as writer:
        for b in batches:
            writer.write(b)
    return writer


def test_write_read_round_trip_is_bit_identical(tmp_path) -> None:
    batch = _random_batch(100)
    # NaN, -0.0 and denormals must survive as the same bits.
    batch.obs[0, :3] = [np.nan, -0.0, np.float32(1e-45)]
    writer = _write(tmp_path, [batch.take(np.arange(0, 40)), batch.take(np.arange(40, 100))])
    assert writer.rows_written == 100
    back, info = read_transitions(tmp_path)
    # Rows come back grouped by task partition (folder names sort log < planks < stick), in write order within each.
    expected = batch.take(np.argsort(batch.task, kind="stable"))
    for name in ("task", "obs", "action", "reward", "next_obs", "terminated", "truncated", "items_obtained",
                 "episode_id", "step"):
        a, b = getattr(back, name), getattr(expected, name)
        assert a.shape == b.shape and np.array_equal(a.astype(b.dtype).view(np.uint8), b.view(np.uint8)), name
    assert back.behaviour_policy.tolist() == expected.behaviour_policy.tolist()
    assert info.task_names == TASKS and info.item_names == ITEMS and info.obs_dim == OBS_DIM
    assert info.task_item_index.tolist() == TASK_ITEM_INDEX


def test_writer_streams_full_row_groups_per_task_partition(tmp_path) -> None:
    batch = _random_batch(90, seed=1)
    batch.task[:] = 0
    batch.task[50:] = 2
    _write(tmp_path, [batch.take(np.arange(i, i + 10)) for i in range(0, 90, 10)], row_group_size=16)
    log = pq.ParquetFile(tmp_path / "task=log" / "part-w0.parquet")
    stick = pq.ParquetFile(tmp_path / "task=stick" / "part-w0.parquet")
    # 50 rows -> 16+16+16+2; 40 rows -> 16+16+8; no partition for a task without rows.
    assert [log.metadata.row_group(i).num_rows for i in range(log.num_row_groups)] == [16, 16, 16, 2]
    assert [stick.metadata.row_group(i).num_rows for i in range(stick.num_row_groups)] == [16, 16, 8]
    assert not (tmp_path / "task=planks").exists()
    streamed = list(iter_transitions(tmp_path, batch_size=16))
    assert sum(len(b) for b in streamed) == 90 and max(len(b) for b in streamed) == 16
    # Two writers (collection workers) write side by side; reading a task subset reads only its partition.
    _write(tmp_path, [_random_batch(5, seed=2)], name="w1")
    part, _ = read_transitions(tmp_path, tasks=["stick"])
    assert (part.task == 2).all() and len(part) == 40 + int((_random_batch(5, seed=2).task == 2).sum())


def _rewrite_column(path, column: str, array: pa.Array) -> None:
    table = pq.read_table(path)
    i = table.schema.get_field_index(column)
    table = table.set_column(i, pa.field(column, array.type), array).replace_schema_metadata(table.schema.metadata)
    pq.write_table(table, path)


def test_schema_checked_on_read_names_the_column_and_expected_type(tmp_path) -> None:
    _write(tmp_path, [_random_batch(20)])
    path = next(tmp_path.glob("task=log/*.parquet"))
    n = pq.read_metadata(path).num_rows
    _rewrite_column(path, "reward", pa.array(np.zeros(n, dtype=np.float64)))
    with pytest.raises(TransitionSchemaError, match="column 'reward' has type double, expected float"):
        read_transitions(tmp_path)
    _write(tmp_path, [_random_batch(20)])  # rewrite a good file, then drop a column
    table = pq.read_table(path)
    pq.write_table(table.drop(["items_obtained"]).replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(TransitionSchemaError, match=r"column 'items_obtained' is missing \(expected type fixed_size_list<item: bool>\[5\]\)"):
        dataset_info(tmp_path)
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(TransitionSchemaError, match="schema metadata is missing 'mto.format_version'"):
        read_transitions(tmp_path)
    with pytest.raises(FileNotFoundError, match="no transition dataset"):
        read_transitions(tmp_path / "nowhere")


def test_dataset_card_round_trip_and_unknown_keys(tmp_path) -> None:
    card = DatasetCard(task_names=list(TASKS), item_names=list(ITEMS), task_item_index=TASK_ITEM_INDEX, obs_dim=OBS_DIM,
                       num_actions=50, horizon=100, backend="techtree", seed=3,
                       behaviour=[{"policy": "random", "tasks": ["log"], "transitions": 10}], transitions=10)
    card.write(tmp_path)
    assert DatasetCard.read(tmp_path) == card
    (tmp_path / "dataset_card.json").write_text('{"task_names": [], "colour": 1}')
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        DatasetCard.read(tmp_path)
