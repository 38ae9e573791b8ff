"""Task metadata as fixed vectors: a sentence per task, encoded once by a hashed bag of words.

CARE (Sodhani et al. 2021) conditions its encoder mixture on a metadata embedding of
each task. The paper encodes a sentence per task with a pretrained language model;
here the sentence is encoded by a signed hashed bag of words (no model, nothing
downloaded), which keeps what matters for the mixture: tasks that share words
("open", "drawer", "press") get overlapping vectors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

DEFAULT_DIM = 64


def _bucket(token: str, dim: int) -> tuple[int, float]:
    # md5, not hash(): Python's string hash changes between processes.
    digest = hashlib.md5(token.encode("utf-8")).digest()
    index = int.from_bytes(digest[:4], "little") % dim
    sign = 1.0 if digest[4] & 1 else -1.0
    return index, sign


def hashed_bag_of_words(sentence: str, dim: int = DEFAULT_DIM) -> np.ndarray:
    """``float32 [dim]``, unit length: the signed hashed counts of the sentence's lower-case words."""
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    vector = np.zeros(dim, dtype=np.float32)
    for token in re.findall(r"[a-z0-9]+", sentence.lower()):
        index, sign = _bucket(token, dim)
        vector[index] += sign
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def metadata_matrix(sentences: Sequence[str], dim: int = DEFAULT_DIM) -> np.ndarray:
    """``float32 [tasks, dim]``: one encoded sentence per task, in task order."""
    return np.stack([hashed_bag_of_words(s, dim) for s in sentences]) if sentences else np.zeros((0, dim), np.float32)


__all__ = ["DEFAULT_DIM", "hashed_bag_of_words", "metadata_matrix"]
