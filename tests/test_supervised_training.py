"""End to end: supervised multi-task training on Ray Train with 2 CPU workers."""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from orchestrator.supervised.training import CHECKPOINT_FILE, load_training_state, train_supervised  # noqa: E402
from tasks.supervised import write_dataset  # noqa: E402


@pytest.fixture(scope="module")
def ray_session():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory) -> Path:
    return write_dataset("multi_digit", tmp_path_factory.mktemp("data"), seed=0, num_train=200, num_val=40, num_test=40)


def _train(path: Path, storage: Path, epochs: int, seen: list, **overrides):
    kwargs = dict(
        dataset_path=path,
        architecture="separate_bottom",
        combiner="pcgrad",
        hidden=(32, 32),
        num_workers=2,
        use_gpu=False,
        epochs=epochs,
        batch_size=64,
        lr=3e-3,
        seed=0,
        storage_path=storage,
        architecture_params={"num_task_specific_layers": 1},
        on_epoch_end=seen.append,
        run_name="tiny",
    )
    kwargs.update(overrides)
    return train_supervised(**kwargs)


def test_two_workers_two_epochs_report_per_task_metrics(ray_session, tiny_digits, tmp_path) -> None:
    seen: list = []
    result = _train(tiny_digits, tmp_path, epochs=2, seen=seen)
    assert [m["epoch"] for m in result.metrics_history] == [0, 1]
    assert seen == result.metrics_history  # on_epoch_end got every epoch on the driver
    for metrics in result.metrics_history:
        for split in ("train", "val", "test"):
            for task in ("left_digit", "right_digit"):
                assert 0.0 <= metrics[f"{split}/accuracy/{task}"] <= 1.0
                assert metrics[f"{split}/loss/{task}"] > 0
    # Training learns (200 pairs, 2 epochs of Adam at 3e-3): the training loss falls, and the
    # training accuracy on both digits ends above chance (0.10 for ten classes; a learner whose
    # updates do nothing stays there, +-0.02 on 200 pairs). Measured: 0.285 and 0.215.
    first, last = result.metrics_history[0], result.metrics_history[-1]
    assert last["train/loss"] < first["train/loss"]
    assert (last["train/accuracy/left_digit"] + last["train/accuracy/right_digit"]) / 2 >= 0.18
    assert list(result.metrics_dataframe["epoch"]) == [0, 1]
    assert result.parameter_counts["task_specific"] > 0
    state = load_training_state(Path(result.checkpoint_path) / CHECKPOINT_FILE)  # weights_only=True
    assert state["epoch"] == 1 and state["task_names"] == ["left_digit", "right_digit"]


def test_bad_architecture_fails_on_the_driver_naming_choices(ray_session, tiny_digits, tmp_path) -> None:
    with pytest.raises(ValueError, match="valid choices"):
        _train(tiny_digits, tmp_path, epochs=1, seen=[], architecture="resnet")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        _train(tiny_digits, tmp_path, epochs=1, seen=[], batch_size=0)


@pytest.mark.slow
def test_rerun_resumes_from_the_latest_checkpoint(ray_session, tiny_digits, tmp_path) -> None:
    _train(tiny_digits, tmp_path, epochs=1, seen=[], combiner="mgda", architecture="model_patch", architecture_params={"trunk": "conv"})
    resumed = _train(tiny_digits, tmp_path, epochs=2, seen=[], combiner="mgda", architecture="model_patch", architecture_params={"trunk": "conv"})
    assert [m["epoch"] for m in resumed.metrics_history] == [1]
