"""On a CUDA device: every architecture x combiner gives the same gradients as on the CPU."""

from __future__ import annotations

import pytest
import torch

from policies import ARCHITECTURES, COMBINERS, apply_multitask_backward, build_combiner, build_network

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _grads(arch: str, combiner: str, device: str, input_dim) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = build_network(arch, input_dim, 4, 3, hidden=(8, 16)).double().to(device)
    g = torch.Generator().manual_seed(1)
    flat = input_dim if isinstance(input_dim, int) else 64
    x = torch.randn(30, flat, generator=g, dtype=torch.float64).to(device)
    task = (torch.arange(30) % 3).to(device)
    y = torch.randint(0, 4, (30,), generator=g).to(device)
    out = net(x, task)
    losses = [torch.nn.functional.cross_entropy(out[task == t], y[task == t]) for t in range(3)]
    apply_multitask_backward(net, losses, build_combiner(combiner, 3))
    return {n: p.grad.detach().cpu() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("combiner", sorted(COMBINERS))
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("input_dim", [12, (1, 8, 8)], ids=["mlp", "conv"])
def test_cuda_matches_cpu(arch: str, combiner: str, input_dim) -> None:
    cpu = _grads(arch, combiner, "cpu", input_dim)
    cuda = _grads(arch, combiner, "cuda", input_dim)
    assert cpu.keys() == cuda.keys()
    for name in cpu:
        assert torch.allclose(cpu[name], cuda[name], atol=1e-8, rtol=1e-6), name
