"""Counter-based random numbers: one independent, reproducible stream per sub-environment.

A vectorised environment that drew from one shared generator would make sub-env ``i``'s
world depend on what the other sub-envs did. Hashing (key_i, step counter_i, purpose)
with the SplitMix64 finaliser instead gives every sub-env its own stream, so sub-env ``i``
of a vector env seeded ``s`` replays exactly the single env seeded ``s + i`` (gymnasium's
convention for vector seeding), at the cost of a few whole-array integer ops.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_STREAM = np.uint64(0xD1B54A32D192ED03)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (a bijection on uint64 with good avalanche), element-wise."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def env_keys(seed: int, num_envs: int) -> np.ndarray:
    """Stream keys for sub-envs ``0..num_envs-1`` seeded ``seed`` (sub-env i gets seed + i)."""
    seeds = (np.uint64(seed % (1 << 64)) + np.arange(num_envs, dtype=np.uint64)) * _GOLDEN
    return mix64(seeds)


def draws(keys: np.ndarray, counters: np.ndarray, stream: int, width: int) -> np.ndarray:
    """``(n, width)`` uint64 random words for n envs at their current counters."""
    base = keys + counters * _GOLDEN + np.uint64((stream * int(_STREAM)) % (1 << 64))
    offsets = np.arange(1, width + 1, dtype=np.uint64) * _M2
    return mix64(base[:, None] + offsets)
