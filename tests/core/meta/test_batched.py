"""Vectorised test-time adaptation (nvresearch.core.meta.batched) against one-task-at-a-time SGD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nvresearch.core.meta import MAML, Task, adapt, batched_adapt, batched_forward, batched_meta_loss, stack_params


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def test_batched_adapt_equals_adapt_per_task_and_sgd() -> None:
    net = _net()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 4, 2, generator=g, dtype=torch.float64)
    params = batched_adapt(net, x, y, F.mse_loss, steps=15, lr=0.1)
    queries = torch.randn(5, 6, 3, generator=g, dtype=torch.float64)
    out = batched_forward(net, params, queries)
    for t in range(5):
        single = adapt(net, (x[t], y[t]), F.mse_loss, steps=15, lr=0.1)
        for name, p in single.named_parameters():
            torch.testing.assert_close(params[name][t], p.detach(), rtol=0, atol=1e-12)
        torch.testing.assert_close(out[t], single(queries[t]).detach(), rtol=0, atol=1e-12)
        ref = _net()
        opt = torch.optim.SGD(ref.parameters(), lr=0.1)
        for _ in range(15):
            opt.zero_grad()
            F.mse_loss(ref(x[t]), y[t]).backward()
            opt.step()
        for a, b in zip(single.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # the original is untouched and adaptation moved the parameters
    assert (params["0.weight"][0] - net[0].weight).abs().max() > 1e-3


def test_batched_adapt_step_scales_scale_each_elements_step() -> None:
    """Meta-SGD: one step with per-element multipliers moves each element by lr * scale * grad (scales of one are
    plain SGD)."""
    net = _net()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 3, generator=g, dtype=torch.float64)
    y = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    plain = batched_adapt(net, x, y, F.mse_loss, steps=1, lr=0.1)
    ones = {n: torch.ones_like(p) for n, p in net.named_parameters()}
    scales = {n: torch.rand(p.shape, generator=g, dtype=torch.float64) for n, p in net.named_parameters()}
    same = batched_adapt(net, x, y, F.mse_loss, steps=1, lr=0.1, step_scales=ones)
    scaled = batched_adapt(net, x, y, F.mse_loss, steps=1, lr=0.1, step_scales=scales)
    for name, p in net.named_parameters():
        torch.testing.assert_close(same[name], plain[name], rtol=0, atol=0)
        step = plain[name] - p.detach()  # -lr * grad, per task
        torch.testing.assert_close(scaled[name], p.detach() + scales[name] * step, rtol=0, atol=1e-12)


def test_stack_params_and_zero_steps() -> None:
    net = _net()
    stacked = stack_params(net, 3)
    assert stacked["0.weight"].shape == (3, 8, 3) and not stacked["0.weight"].requires_grad
    x, y = torch.randn(3, 2, 3, dtype=torch.float64), torch.randn(3, 2, 2, dtype=torch.float64)
    same = batched_adapt(net, x, y, F.mse_loss, steps=0, lr=0.1)
    for n in stacked:
        torch.testing.assert_close(same[n], stacked[n])


def test_adapt_subset_and_errors() -> None:
    net = _net()
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    head_only = adapt(net, (x, y), F.mse_loss, steps=3, lr=0.1, inner_params=["2"])
    torch.testing.assert_close(head_only[0].weight, net[0].weight, rtol=0, atol=0)
    assert (head_only[2].weight - net[2].weight).abs().max() > 1e-4
    with pytest.raises(ValueError, match="match no parameter"):
        adapt(net, (x, y), F.mse_loss, steps=1, lr=0.1, inner_params=["head"])
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        adapt(net, (x, y), F.mse_loss, steps=-1, lr=0.1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        batched_adapt(net, x[None], y[None], F.mse_loss, steps=1, lr=0.0)
    with pytest.raises(ValueError, match="differ in"):
        batched_adapt(net, x[None], y[None, :3], F.mse_loss, steps=1, lr=0.1)


@pytest.mark.parametrize("first_order", [False, True])
def test_batched_meta_loss_equals_textbook_maml(first_order: bool) -> None:
    """Value and meta-gradient of the vectorised objective equal MAML.meta_loss (textbook) task by task."""
    g = torch.Generator().manual_seed(3)
    sx, sy = (
        torch.randn(4, 3, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 3, 2, generator=g, dtype=torch.float64),
    )
    qx, qy = (
        torch.randn(4, 5, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 5, 2, generator=g, dtype=torch.float64),
    )
    net = _net()
    loss = batched_meta_loss(net, sx, sy, qx, qy, F.mse_loss, steps=3, lr=0.2, first_order=first_order)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    ref_net = _net()
    maml = MAML(ref_net, F.mse_loss, inner_steps=3, inner_lr=0.2, first_order=first_order, mode="textbook")
    ref = maml.meta_loss([Task(sx[t], sy[t], qx[t], qy[t]) for t in range(4)])
    ref_grads = torch.autograd.grad(ref, list(ref_net.parameters()))
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # the inner loop matters: a different step size gives a different objective
    other = batched_meta_loss(net, sx, sy, qx, qy, F.mse_loss, steps=3, lr=0.05, first_order=first_order)
    assert abs(float(other.detach()) - float(loss.detach())) > 1e-4


def test_batched_meta_loss_errors() -> None:
    net = _net()
    x, y = torch.randn(2, 3, 3, dtype=torch.float64), torch.randn(2, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="support sets"):
        batched_meta_loss(net, x, y, x[:1], y[:1], F.mse_loss, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="agree"):
        batched_meta_loss(net, x, y[:, :2], x, y, F.mse_loss, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="buffers"):
        batched_meta_loss(nn.BatchNorm1d(3).double(), x, x, x, x, F.mse_loss, steps=1, lr=0.1)
