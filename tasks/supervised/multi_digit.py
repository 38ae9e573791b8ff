"""multi_digit: the MultiMNIST construction (Sabour et al. 2017; Sener & Koltun 2018).

Two digits are overlaid on one canvas, one near the top-left and one near the
bottom-right, each jittered by a random offset; task ``left_digit`` reads the
first, task ``right_digit`` the second.  Digits come from MNIST IDX files when
``mnist_path`` is given (train files for train/val, t10k for test), else from
scikit-learn's bundled 8x8 digits (no download), whose images are first split
into disjoint train/val/test pools so test pairs use unseen digit images.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from tasks.supervised.schema import write_table
from tasks.task_space import TaskSpace

NAME = "multi_digit"
TASK_SPACE = TaskSpace(("left_digit", "right_digit"))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format; ``.gz`` accepted) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"MNIST file {stem}[.gz] not found in {folder}")


def load_digit_pools(mnist_path: str | Path | None, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Disjoint pools of single digits per split: images float32 in [0, 1] [N, S, S], labels [N]."""
    if mnist_path is not None:
        folder = Path(mnist_path)
        train_x = read_idx(_find(folder, "train-images-idx3-ubyte")).astype(np.float32) / 255.0
        train_y = read_idx(_find(folder, "train-labels-idx1-ubyte")).astype(np.int64)
        test_x = read_idx(_find(folder, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
        test_y = read_idx(_find(folder, "t10k-labels-idx1-ubyte")).astype(np.int64)
        order = rng.permutation(len(train_y))
        n_val = len(order) // 6
        return {
            "train": (train_x[order[n_val:]], train_y[order[n_val:]]),
            "val": (train_x[order[:n_val]], train_y[order[:n_val]]),
            "test": (test_x, test_y),
        }
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    order = rng.permutation(len(labels))
    n_test = n_val = len(order) // 5
    return {
        "train": (images[order[n_val + n_test :]], labels[order[n_val + n_test :]]),
        "val": (images[order[:n_val]], labels[order[:n_val]]),
        "test": (images[order[n_val : n_val + n_test]], labels[order[n_val : n_val + n_test]]),
    }


def overlay_pairs(
    images: np.ndarray, labels: np.ndarray, num_pairs: int, shift: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num_pairs`` canvases [(S+shift) x (S+shift)] with a left and a right digit (pixelwise max)."""
    side = images.shape[1]
    canvas_side = side + shift
    left = rng.integers(0, len(labels), num_pairs)
    right = rng.integers(0, len(labels), num_pairs)
    jitter = shift // 2 + 1
    canvases = np.zeros((num_pairs, canvas_side, canvas_side), dtype=np.float32)
    # Left digit near the top-left corner, right digit near the bottom-right one.
    lr, lc = rng.integers(0, jitter, (2, num_pairs))
    rr, rc = shift - rng.integers(0, jitter, (2, num_pairs))
    for i in range(num_pairs):
        canvases[i, lr[i] : lr[i] + side, lc[i] : lc[i] + side] = images[left[i]]
        region = canvases[i, rr[i] : rr[i] + side, rc[i] : rc[i] + side]
        np.maximum(region, images[right[i]], out=region)
    return canvases, labels[left], labels[right]


def generate(
    out_path: str | Path,
    seed: int = 0,
    mnist_path: str | Path | None = None,
    num_train: int = 6000,
    num_val: int = 1000,
    num_test: int = 1000,
    shift: int | None = None,
) -> Path:
    """Write the multi_digit Parquet file; each pair gives one row per task (same example_id)."""
    rng = np.random.default_rng(seed)
    pools = load_digit_pools(mnist_path, rng)
    side = pools["train"][0].shape[1]
    # Default: 4 px for 8x8 digits, 8 px for 28x28 MNIST (MultiMNIST's 36x36 canvas).
    shift = int(shift if shift is not None else max(4, side * 2 // 7))
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    parts, next_id = [], 0
    for split, count in sizes.items():
        if count < 0:
            raise ValueError(f"num_{split} must be >= 0, got {count}")
        canvases, left_labels, right_labels = overlay_pairs(*pools[split], count, shift, rng)
        ids = np.arange(next_id, next_id + count)
        next_id += count
        # Row 2i: task left_digit, row 2i+1: task right_digit, same image.
        parts.append(
            (
                np.repeat(ids, 2),
                np.full(2 * count, split),
                np.tile([0, 1], count),
                np.repeat(canvases.reshape(count, -1), 2, axis=0),
                np.stack([left_labels, right_labels], axis=1).reshape(-1),
            )
        )
    example_id, split, task, x, y = (np.concatenate(cols) for cols in zip(*parts))
    canvas_side = side + shift
    return write_table(
        out_path,
        name=NAME,
        task_names=TASK_SPACE.names,
        input_shape=(1, canvas_side, canvas_side),
        target="classification",
        num_classes=10,
        example_id=example_id,
        split=split,
        task=task,
        x=x,
        y=y,
        extra_metadata={
            "params": {
                "seed": seed,
                "source": "mnist" if mnist_path else "sklearn_digits",
                "num_train": num_train,
                "num_val": num_val,
                "num_test": num_test,
                "shift": shift,
            }
        },
    )
