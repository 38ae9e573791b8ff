"""On a CUDA device: discrete CQL updates give the same network as on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.cql import CQLBatch, CQLConfig, DiscreteCQL

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _train(device: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    arrays = {"obs": rng.random((64, 10), dtype=np.float32), "action": rng.integers(0, 5, 64),
              "reward": (rng.random(64) < 0.3).astype(np.float32), "next_obs": rng.random((64, 10), dtype=np.float32),
              "terminated": rng.random(64) < 0.2}
    agent = DiscreteCQL(10, 5, CQLConfig(hidden=(32, 32), lr=1e-3), seed=0, device=device)
    for _ in range(20):
        agent.update(CQLBatch.from_numpy(device, **arrays))
    return agent.q_values(arrays["obs"])


def test_cuda_update_matches_cpu() -> None:
    cpu, cuda = _train("cpu"), _train("cuda")
    np.testing.assert_allclose(cuda, cpu, rtol=1e-4, atol=1e-4)
