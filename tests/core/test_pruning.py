"""Tests for nvresearch.core.pruning: importance criteria (spec taylor.md A.1-A.2) and MAC counting (A.5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nvresearch.core.pruning import (
    PAPER_MOMENTUM,
    BNScale,
    RandomImportance,
    TaylorFOBN,
    TaylorFOWeight,
    TaylorSOBN,
    WeightMagnitude,
    count_macs_and_params,
    find_bn_layers,
    find_producing_convs,
)


class Gate(nn.Module):
    """Explicit multiplicative gate of ones after a BN (the paper's construction, spec A.1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


class TinyNet(nn.Module):
    """conv-BN-(gate)-ReLU x2, then global pool and a linear head."""

    def __init__(self, gated: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.gate1 = Gate(4) if gated else nn.Identity()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.gate2 = Gate(6) if gated else nn.Identity()
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.gate1(self.bn1(self.conv1(x))))
        x = torch.relu(self.gate2(self.bn2(self.conv2(x))))
        return self.fc(x.mean((2, 3)))


def _make_net(seed: int = 0, gated: bool = False) -> TinyNet:
    torch.manual_seed(seed)
    net = TinyNet(gated).double()
    with torch.no_grad():  # non-trivial affine parameters so both terms of gamma*dgamma + beta*dbeta matter
        for bn in (net.bn1, net.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return net


def _batch(seed: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g)


def _backward(net: nn.Module, seed: int) -> None:
    net.zero_grad()
    x, y = _batch(seed)
    nn.functional.cross_entropy(net(x), y).backward()


def test_taylor_fo_bn_equals_gate_gradient() -> None:
    gated = _make_net(gated=True)
    plain = _make_net(gated=False)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    _backward(gated, seed=1)
    _backward(plain, seed=1)
    crit = TaylorFOBN(plain)
    crit.accumulate()
    scores = crit.scores()
    for bn_name, gate in (("bn1", gated.gate1), ("bn2", gated.gate2)):
        expected = gate.weight.grad.square()  # (z * dL/dz)^2 at z = 1
        assert expected.abs().max() > 1e-8  # the comparison is not vacuous
        torch.testing.assert_close(scores[bn_name], expected, rtol=1e-10, atol=1e-14)


def test_taylor_so_bn_equals_gate_second_order() -> None:
    gated = _make_net(gated=True)
    plain = _make_net(gated=False)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    crit = TaylorSOBN(plain)
    expected_window = {}
    for seed in (1, 2):
        x, y = _batch(seed)
        gate_loss = nn.functional.cross_entropy(gated(x), y)
        gates = (gated.gate1.weight, gated.gate2.weight)
        grads = torch.autograd.grad(gate_loss, gates, create_graph=True)
        for bn_name, gate, g in zip(("bn1", "bn2"), gates, grads):
            hzz = torch.stack([torch.autograd.grad(g[c], gate, retain_graph=True)[0][c] for c in range(g.numel())])
            assert hzz.abs().max() > 1e-8
            value = (-g.detach() + 0.5 * hzz).square()  # (-z g + z^2 H_zz / 2)^2 at z = 1
            expected_window[bn_name] = expected_window.get(bn_name, 0) + value / 2
        crit.accumulate(nn.functional.cross_entropy(plain(x), y))
    assert all(p.grad is None for p in plain.parameters())  # .grad untouched
    scores = crit.scores()
    for bn_name, expected in expected_window.items():
        torch.testing.assert_close(scores[bn_name], expected, rtol=1e-9, atol=1e-14)
    with pytest.raises(ValueError):
        crit.accumulate()


def test_taylor_fo_bn_accumulation_and_momentum_by_hand() -> None:
    net = _make_net()
    crit = TaylorFOBN(net)
    assert crit.momentum == PAPER_MOMENTUM == 0.9
    per_batch = []
    for seed in (1, 2, 3):
        _backward(net, seed)
        bn = net.bn2
        per_batch.append((bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).square().detach().clone())
        crit.accumulate()
    assert crit.num_accumulated == 3
    window1 = sum(per_batch) / 3  # mean of per-minibatch squares, not square of the mean
    torch.testing.assert_close(crit.scores()["bn2"], window1, rtol=1e-12, atol=0)
    first = crit.step()  # first pruning step: no momentum
    torch.testing.assert_close(first["bn2"], window1, rtol=1e-12, atol=0)
    assert crit.num_accumulated == 0
    with pytest.raises(RuntimeError):
        crit.scores()
    _backward(net, 4)
    window2 = (net.bn2.weight * net.bn2.weight.grad + net.bn2.bias * net.bn2.bias.grad).square().detach()
    crit.accumulate()
    second = crit.step()
    torch.testing.assert_close(second["bn2"], 0.9 * window1 + 0.1 * window2, rtol=1e-12, atol=0)


def test_square_of_minibatch_gradient_not_square_of_window_sum() -> None:
    net = _make_net()
    crit = TaylorFOBN(net)
    gates = []
    for seed in (1, 2):
        _backward(net, seed)
        gates.append((net.bn1.weight * net.bn1.weight.grad + net.bn1.bias * net.bn1.bias.grad).detach().clone())
        crit.accumulate()
    mean_of_squares = (gates[0].square() + gates[1].square()) / 2
    square_of_mean = ((gates[0] + gates[1]) / 2).square()
    torch.testing.assert_close(crit.scores()["bn1"], mean_of_squares)
    assert not torch.allclose(crit.scores()["bn1"], square_of_mean)


def test_reset_clears_window_and_momentum() -> None:
    net = _make_net()
    crit = TaylorFOBN(net, momentum=0.5)
    _backward(net, 1)
    crit.accumulate()
    crit.step()
    _backward(net, 2)
    crit.accumulate()
    crit.reset()
    assert crit.num_accumulated == 0
    with pytest.raises(RuntimeError):
        crit.scores()
    _backward(net, 3)
    crit.accumulate()
    expected = crit.scores()
    after = crit.step()  # momentum state was cleared, so this is a "first" step again
    for name in expected:
        torch.testing.assert_close(after[name], expected[name])


def test_taylor_fo_weight_sum_of_squares() -> None:
    net = _make_net()
    crit = TaylorFOWeight(net)
    assert crit.momentum == PAPER_MOMENTUM
    per_batch = []
    for seed in (1, 2):
        _backward(net, seed)
        w = net.conv2.weight
        per_batch.append(torch.stack([(w[c] * w.grad[c]).square().sum() for c in range(6)]).detach())
        crit.accumulate()
    torch.testing.assert_close(crit.scores()["bn2"], (per_batch[0] + per_batch[1]) / 2, rtol=1e-12, atol=0)


def test_weight_magnitude_and_bn_scale_hand_set() -> None:
    net = _make_net()
    with torch.no_grad():
        net.conv1.weight.zero_()
        net.conv1.weight[0].fill_(1.0)  # 3*3*3 = 27 entries
        net.conv1.weight[1, 0, 0, 0] = -2.0
        net.conv1.weight[2].fill_(-0.5)
        net.bn1.weight.copy_(torch.tensor([-3.0, 0.0, 0.25, 1.0]))
    l2 = WeightMagnitude(net, layers=["bn1"]).scores()["bn1"]
    l1 = WeightMagnitude(net, layers=["bn1"], p=1).scores()["bn1"]
    torch.testing.assert_close(l2, torch.tensor([27.0, 4.0, 6.75, 0.0], dtype=torch.float64))
    torch.testing.assert_close(l1, torch.tensor([27.0, 2.0, 13.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(BNScale(net).scores()["bn1"], torch.tensor([3.0, 0.0, 0.25, 1.0], dtype=torch.float64))
    assert WeightMagnitude(net).step()["bn1"].shape == (4,)  # weight-only criteria need no accumulate


def test_random_deterministic_by_seed() -> None:
    net = _make_net()
    a, b, c = RandomImportance(net, seed=7), RandomImportance(net, seed=7), RandomImportance(net, seed=8)
    sa, sb, sc = a.scores(), b.scores(), c.scores()
    assert set(sa) == {"bn1", "bn2"} and sa["bn2"].shape == (6,)
    for name in sa:
        assert torch.equal(sa[name], sb[name])
        assert ((sa[name] >= 0) & (sa[name] < 5)).all()
    assert not torch.equal(sa["bn1"], sc["bn1"])
    a.reset()
    assert torch.equal(a.scores()["bn1"], sa["bn1"])


def test_criteria_leave_model_unchanged() -> None:
    net = _make_net()
    x, _ = _batch(9)
    net.eval()
    before_out = net(x).detach()
    before_state = {k: v.clone() for k, v in net.state_dict().items()}
    for crit in (TaylorFOBN(net), TaylorFOWeight(net), WeightMagnitude(net), BNScale(net), RandomImportance(net)):
        _backward(net, 1)
        crit.accumulate()
        crit.step()
        crit.remove()
    count_macs_and_params(net, (2, 3, 6, 6))
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    for k, v in net.state_dict().items():
        assert torch.equal(v, before_state[k]), k
    assert torch.equal(net(x), before_out)
    assert not net.training


def test_producing_conv_lookup_and_errors() -> None:
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    bns = find_bn_layers(model)
    assert len(bns) == 20
    convs = find_producing_convs(model, bns)
    assert convs["bn1"] == "conv1"
    assert convs["layer2.0.bn2"] == "layer2.0.conv2"
    assert convs["layer2.0.downsample.1"] == "layer2.0.downsample.0"
    with pytest.raises(ValueError):
        TaylorFOBN(model, layers=["fc"])
    with pytest.raises(ValueError):
        TaylorFOBN(model, momentum=1.0)
    net = _make_net()
    with pytest.raises(RuntimeError):
        TaylorFOBN(net).accumulate()  # no backward yet


def test_macs_tiny_net_exact() -> None:
    net = _make_net()
    macs, params = count_macs_and_params(net, (2, 3, 6, 6), bn_term=False)
    conv1 = 4 * 3 * 9 * 36
    conv2 = 6 * 4 * 9 * 36
    fc = 6 * 5
    assert macs == conv1 + conv2 + fc
    assert params == 4 * 3 * 9 + 2 * 4 + 6 * 4 * 9 + 2 * 6 + 6 * 5 + 5
    macs_bn, _ = count_macs_and_params(net, (2, 3, 6, 6))
    assert macs_bn == macs + 2 * 3 * 36
    strided = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    macs_s, _ = count_macs_and_params(strided, (1, 4, 8, 8), bn_term=False)
    assert macs_s == 8 * 2 * 9 * 16 + 128 * 3


@pytest.mark.parametrize(
    ("arch", "gmacs", "mparams"),
    [("resnet18", 1.814, 11.69), ("resnet34", 3.664, 21.80), ("resnet50", 4.089, 25.56)],
)
def test_resnet_macs_match_spec(arch: str, gmacs: float, mparams: float) -> None:
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    macs, params = count_macs_and_params(model, (1, 3, 224, 224))
    # The spec gives 3 decimals (GMACs) and 2 decimals (M params): agree to rounding.
    assert abs(macs / 1e9 - gmacs) <= 0.0005
    assert abs(params / 1e6 - mparams) <= 0.005
