"""Multi-task architectures: parameter counts by formula, per-task routing, and
apply_multitask_backward against plain autograd."""

from __future__ import annotations

import pytest
import torch

from policies import (
    ARCHITECTURES,
    ModelPatch,
    apply_multitask_backward,
    build_combiner,
    build_network,
    summed_backward,
)

D, H1, H2, O, T = 7, 5, 4, 3, 3


def lin(i: int, o: int) -> int:
    return i * o + o


TRUNK = lin(D, H1) + 2 * H1 + lin(H1, H2) + 2 * H2  # Linear + LayerNorm per layer
HEAD = lin(H2, O)


@pytest.mark.parametrize(
    ("name", "knobs", "shared", "task_specific"),
    [
        ("shared_bottom", {}, TRUNK, T * HEAD),
        ("separate_bottom", {"num_task_specific_layers": 1}, lin(H1, H2) + 2 * H2, T * (lin(D, H1) + 2 * H1 + HEAD)),
        ("separate_bottom", {"num_task_specific_layers": 0}, TRUNK, T * HEAD),
        ("separate_bottom", {"num_task_specific_layers": 2}, 0, T * (TRUNK + HEAD)),
        ("model_patch", {}, TRUNK, T * (2 * H1 + 2 * H2 + HEAD)),
        ("independent", {}, 0, T * (TRUNK + HEAD)),
        ("shared_bottom", {"norm": False}, lin(D, H1) + lin(H1, H2), T * HEAD),
    ],
)
def test_mlp_parameter_counts_match_formula(name: str, knobs: dict, shared: int, task_specific: int) -> None:
    net = build_network(name, D, O, T, hidden=(H1, H2), **knobs)
    assert net.parameter_counts() == {"shared": shared, "task_specific": task_specific}
    assert shared + task_specific == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(("layers", "modules"), [(2, 4), (3, 2), (4, 3)])
def test_soft_modular_parameter_counts_match_formula(layers: int, modules: int) -> None:
    width, n2 = 6, modules * modules
    net = build_network("soft_modular", D, O, T, hidden=(H1, H2), num_layers=layers, num_modules=modules, module_width=width)
    shared = (
        TRUNK
        + lin(H2, width)  # state projection to the module width
        + layers * modules * (width * width + width)  # modules
        + (layers - 1) * lin(width, n2)  # routing W_d
        + (layers - 2) * lin(n2, width)  # routing W_u
        + lin(width, O)  # shared output layer
    )
    assert net.parameter_counts() == {"shared": shared, "task_specific": T * width}


def test_conv_trunk_parameter_counts_match_formula() -> None:
    c1, c2 = 4, 6
    conv = (1 * c1 * 9 + c1 + 2 * c1) + (c1 * c2 * 9 + c2 + 2 * c2)  # conv + GroupNorm(1, C)
    features = c2 * 3 * 3  # 12 -> 6 -> 3 with stride-2 convs
    shared_bottom = build_network("shared_bottom", (1, 12, 12), 10, 2, hidden=(c1, c2))
    assert shared_bottom.parameter_counts() == {"shared": conv, "task_specific": 2 * lin(features, 10)}
    patch = build_network("model_patch", (1, 12, 12), 10, 2, hidden=(c1, c2))
    per_task = 2 * (c1 + c2) + 9 * (c1 + c2) + lin(features, 10)  # scale, bias, depthwise 3x3, head
    assert patch.parameter_counts() == {"shared": conv, "task_specific": 2 * per_task}
    x = torch.randn(5, 144)
    assert patch(x, torch.tensor([0, 1, 1, 0, 1])).shape == (5, 10)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("input_dim", [D, (1, 8, 8)])
def test_each_sample_gets_its_own_tasks_output(name: str, input_dim) -> None:
    torch.manual_seed(0)
    net = build_network(name, input_dim, O, T, hidden=(H1, H2)).eval()
    flat = D if isinstance(input_dim, int) else 64
    x = torch.randn(9, flat)
    task = torch.tensor([2, 0, 1, 1, 2, 0, 0, 2, 1])
    out = net(x, task)
    assert out.shape == (9, O)
    # A sample's output depends on its own row and task only (not on the batch).
    for i in range(9):
        assert torch.allclose(net(x[i : i + 1], task[i : i + 1])[0], out[i], atol=1e-5)
    perm = torch.randperm(9)
    assert torch.allclose(net(x[perm], task[perm]), out[perm], atol=1e-5)


def test_shared_bottom_uses_the_tasks_head() -> None:
    net = build_network("shared_bottom", D, O, T, hidden=(H1, H2))
    x = torch.randn(4, D)
    task = torch.tensor([1, 1, 0, 2])
    features = net.trunk(x)
    expected = torch.stack([net.task_specific[int(t)](features[i]) for i, t in enumerate(task)])
    assert torch.allclose(net(x, task), expected, atol=1e-6)


def test_bad_input_is_refused_with_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="valid choices: .*'independent'.*'shared_bottom'"):
        build_network("transformer", D, O, T)
    with pytest.raises(ValueError, match=r"valid knobs: \['norm', 'num_task_specific_layers'\]"):
        build_network("separate_bottom", D, O, T, num_layers=2)
    with pytest.raises(ValueError, match="num_task_specific_layers"):
        build_network("separate_bottom", D, O, T, hidden=(4,), num_task_specific_layers=2)
    net = build_network("SharedBottom", D, O, T)
    with pytest.raises(ValueError, match=r"task ids must be in \[0, 3\)"):
        net(torch.randn(2, D), torch.tensor([0, 3]))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_sum_combiner_equals_backward_of_the_summed_loss(name: str) -> None:
    torch.manual_seed(1)
    net = build_network(name, D, O, T, hidden=(H1, H2))
    x, task = torch.randn(12, D), torch.tensor([0, 1, 2] * 4)
    target = torch.randn(12, O)

    def task_losses():
        out = net(x, task)
        return torch.stack([((out[task == t] - target[task == t]) ** 2).mean() for t in range(T)])

    task_losses().sum().backward()
    expected = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    stats = apply_multitask_backward(net, task_losses(), build_combiner("sum", T))
    for n, p in net.named_parameters():
        assert torch.allclose(p.grad, expected[n], atol=1e-6), n
    assert stats.present == [True] * T
    # Independent shares nothing, so there is nothing to combine and no weights.
    assert stats.task_weights == (None if name == "independent" else [1.0] * T)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_summed_backward_equals_the_sum_combiner_in_one_pass(name: str) -> None:
    """One backward pass of sum_t L_t gives what the sum combiner does with T passes: the shared
    parameters the summed gradient, each task's own its gradient, an absent task's None."""
    torch.manual_seed(4)
    net = build_network(name, D, O, T, hidden=(H1, H2))
    x, task = torch.randn(10, D), torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 1, 1])  # task 2 absent
    target = torch.randn(10, O)

    def task_losses():
        out = net(x, task)
        return [((out[task == t] - target[task == t]) ** 2).mean() if (task == t).any() else None for t in range(T)]

    apply_multitask_backward(net, task_losses(), build_combiner("sum", T))
    expected = {n: None if p.grad is None else p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    assert summed_backward(net, task_losses())
    for n, p in net.named_parameters():
        if expected[n] is None:
            assert p.grad is None, n
        else:
            assert torch.allclose(p.grad, expected[n], atol=1e-6), n


def test_summed_backward_declines_a_non_finite_loss_and_leaves_grads_alone() -> None:
    net = build_network("shared_bottom", D, O, T, hidden=(H1, H2))
    out = net(torch.randn(6, D), torch.tensor([0, 1, 2, 0, 1, 2]))
    losses = [out[:2].sum(), out[2:4].sum() * float("inf"), out[4:].sum()]
    assert not summed_backward(net, losses)
    assert all(p.grad is None for p in net.parameters())
    assert not summed_backward(net, [None, None, None])


def test_task_heads_get_their_own_gradient_and_absent_tasks_none() -> None:
    torch.manual_seed(2)
    net = build_network("shared_bottom", D, O, T, hidden=(H1, H2))
    x, task = torch.randn(6, D), torch.tensor([0, 0, 1, 1, 0, 1])  # task 2 absent
    out = net(x, task)
    losses = [out[task == t].pow(2).mean() for t in range(T)]  # task 2: nan (mean of nothing)
    head1 = torch.autograd.grad(losses[1], list(net.task_specific[1].parameters()), retain_graph=True)
    with pytest.raises(ValueError, match="list of per-task scalar losses with None"):
        apply_multitask_backward(net, torch.stack(losses), build_combiner("mgda", T))
    stats = apply_multitask_backward(net, losses, build_combiner("mgda", T))
    assert stats.present == [True, True, False]
    for p, g in zip(net.task_specific[1].parameters(), head1):
        assert torch.allclose(p.grad, g)
    assert all(p.grad is None for p in net.task_specific[2].parameters())
    assert all(p.grad is not None for p in net.shared_parameters())


def test_model_patch_transfer_trains_only_the_new_patch() -> None:
    torch.manual_seed(3)
    net: ModelPatch = build_network("model_patch", D, O, 2, hidden=(H1, H2))  # type: ignore[assignment]
    net.freeze_shared()
    new = net.add_task()
    assert new == 2 and net.num_tasks == 3
    shared_before = [p.detach().clone() for p in net.shared_parameters()]
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    x, task = torch.randn(8, D), torch.full((8,), new)
    out = net(x, task)
    losses = [out[task == t].pow(2).mean() if t == new else None for t in range(3)]
    apply_multitask_backward(net, losses, build_combiner("sum", 3))
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(shared_before, net.shared_parameters()))
    assert net.task_specific[new].head.weight.grad is not None
    assert net.parameter_counts()["task_specific"] == 3 * (2 * H1 + 2 * H2 + HEAD)


def test_explicit_parameter_split_covers_an_extra_shared_head() -> None:
    # As inside an RLlib learner: a policies network plus a value head every task shares.
    torch.manual_seed(4)
    net = build_network("shared_bottom", D, O, 2, hidden=(H1, H2))
    value_head = torch.nn.Linear(D, 1)
    x, task = torch.randn(6, D), torch.tensor([0, 1] * 3)
    out = net(x, task).sum(dim=1) + value_head(x)[:, 0]
    losses = [out[task == t].pow(2).mean() for t in range(2)]
    expected = torch.autograd.grad(losses[0] + losses[1], list(value_head.parameters()), retain_graph=True)
    apply_multitask_backward(
        net,
        losses,
        build_combiner("sum", 2),
        shared_parameters=net.shared_parameters() + list(value_head.parameters()),
        task_parameters=[net.task_parameters(t) for t in range(2)],
    )
    for p, g in zip(value_head.parameters(), expected):
        assert torch.allclose(p.grad, g, atol=1e-6)
