"""Tests for nvresearch.core.pruning: criteria (spec taylor.md A.1-A.2), dependency groups and surgery (A.4, A.7),
the oracle and correlation (A.6), the pruning engine (A.3) and MAC counting (A.5)."""

from __future__ import annotations

import io

import pytest
import torch
import torchvision
from torch import nn

from nvresearch.core.pruning import (
    PAPER_MOMENTUM,
    BNScale,
    DependencyGraph,
    Pruner,
    PruneTarget,
    RandomImportance,
    TaylorFO,
    TaylorFOBN,
    TaylorFOFG,
    TaylorFOWeight,
    TaylorSO,
    WeightMagnitude,
    count_macs_and_params,
    make_criterion,
    oracle_importance,
    prune,
    rank_correlation,
    remove_channels,
    shrink_to_state_dict,
)


class Gate(nn.Module):
    """Explicit multiplicative gate of ones after a BN (the paper's construction, spec A.1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, *([1] * (x.dim() - 2)))


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


class TinyLeNet(nn.Module):
    """No BN: gates sit after ReLU+pool (conv) and after ReLU (fc), as the reference LeNet (spec A.4)."""

    def __init__(self, gated: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.gate1 = Gate(4) if gated else nn.Identity()
        self.fc1 = nn.Linear(4 * 2 * 2, 6)
        self.gate2 = Gate(6) if gated else nn.Identity()
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gate1(nn.functional.max_pool2d(torch.relu(self.conv(x)), 2))
        x = self.gate2(torch.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


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


def _graph(net: nn.Module) -> DependencyGraph:
    return DependencyGraph(net, _batch(0)[0])


def _backward(net: nn.Module, seed: int) -> torch.Tensor:
    net.zero_grad()
    x, y = _batch(seed)
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    return loss


def _bn_gate(bn: nn.BatchNorm2d) -> torch.Tensor:
    return (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).detach().clone()


# ---------------------------------------------------------------------------------------------- criteria
def test_taylor_fo_bn_equals_gate_gradient() -> None:
    gated = _make_net(gated=True)
    plain = _make_net(gated=False)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    crit = TaylorFOBN(_graph(plain))
    _backward(gated, seed=1)
    _backward(plain, seed=1)
    crit.accumulate()
    scores = crit.scores()
    assert list(scores) == ["conv1", "conv2"]
    for group, gate in (("conv1", gated.gate1), ("conv2", gated.gate2)):
        expected = gate.weight.grad.square().float()  # (z * dL/dz)^2 at z = 1
        assert expected.abs().max() > 1e-8  # the comparison is not vacuous
        torch.testing.assert_close(scores[group], expected, rtol=1e-5, atol=1e-12)


def test_taylor_fo_hook_gates_equal_bn_closed_form_and_explicit_gates() -> None:
    plain = _make_net()
    closed, hooked = TaylorFO(_graph(plain)), TaylorFO(_graph(plain), bn_closed_form=False)
    _backward(plain, seed=3)
    closed.accumulate()
    hooked.accumulate()
    for name, value in closed.scores().items():
        torch.testing.assert_close(hooked.scores()[name], value, rtol=1e-5, atol=1e-12)
    hooked.remove()
    # no BN (LeNet-style): the gate on the producer output equals an explicit gate after ReLU and pooling
    torch.manual_seed(0)
    gated = TinyLeNet(gated=True).double()
    plain = TinyLeNet().double()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    x = torch.randn(5, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    crit = TaylorFO(DependencyGraph(plain, x))
    nn.functional.cross_entropy(gated(x), y).backward()
    nn.functional.cross_entropy(plain(x), y).backward()
    crit.accumulate()
    scores = crit.scores()
    torch.testing.assert_close(scores["conv"], gated.gate1.weight.grad.square().float(), rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(scores["fc1"], gated.gate2.weight.grad.square().float(), rtol=1e-5, atol=1e-12)


def test_taylor_fo_fg_per_example_squares() -> None:
    plain = _make_net()
    crit = TaylorFOFG(_graph(plain))
    x, y = _batch(5, n=4)
    nn.functional.cross_entropy(plain(x), y).backward()
    crit.accumulate()
    # by hand: the BN output a (the gate point), dL/da of the batch-mean loss, per-example sums, squared, summed
    a = plain.bn2(plain.conv2(torch.relu(plain.bn1(plain.conv1(x)))))
    loss = nn.functional.cross_entropy(plain.fc(torch.relu(a).mean((2, 3))), y)
    (grad,) = torch.autograd.grad(loss, a)
    per_example = (a * grad).sum((2, 3))
    expected = per_example.square().sum(0)
    assert not torch.allclose(expected, per_example.sum(0).square())  # differs from the FO criterion
    torch.testing.assert_close(crit.scores()["conv2"], expected.detach().float(), rtol=1e-5, atol=1e-12)
    crit.remove()


def test_taylor_so_equals_gate_second_order() -> None:
    gated = _make_net(gated=True)
    plain = _make_net(gated=False)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    crit = TaylorSO(_graph(plain))
    expected_window = {}
    for seed in (1, 2):
        x, y = _batch(seed)
        gate_loss = nn.functional.cross_entropy(gated(x), y)
        gates = (gated.gate1.weight, gated.gate2.weight)
        grads = torch.autograd.grad(gate_loss, gates, create_graph=True)
        for group, gate, g in zip(("conv1", "conv2"), gates, grads, strict=True):
            hzz = torch.stack([torch.autograd.grad(g[c], gate, retain_graph=True)[0][c] for c in range(g.numel())])
            assert hzz.abs().max() > 1e-8
            value = (-g.detach() + 0.5 * hzz).square()  # (-z g + z^2 H_zz / 2)^2 at z = 1
            expected_window[group] = expected_window.get(group, 0) + value / 2
        crit.accumulate(nn.functional.cross_entropy(plain(x), y))
    assert all(p.grad is None for p in plain.parameters())  # .grad untouched
    scores = crit.scores()
    for group, expected in expected_window.items():
        torch.testing.assert_close(scores[group], expected.float(), rtol=1e-5, atol=1e-12)
    with pytest.raises(ValueError):
        crit.accumulate()
    crit.remove()
    assert all(not m._forward_hooks for m in plain.modules())


def test_taylor_fo_bn_accumulation_and_momentum_by_hand() -> None:
    net = _make_net()
    crit = TaylorFOBN(_graph(net))
    assert crit.momentum == PAPER_MOMENTUM == 0.9
    per_batch = []
    for seed in (1, 2, 3):
        _backward(net, seed)
        per_batch.append(_bn_gate(net.bn2).square().float())
        crit.accumulate()
    assert crit.num_accumulated == 3
    window1 = sum(per_batch) / 3  # mean of per-minibatch squares, not square of the mean
    torch.testing.assert_close(crit.scores()["conv2"], window1)
    first = crit.step()  # first pruning step: no momentum
    torch.testing.assert_close(first["conv2"], window1)
    assert crit.num_accumulated == 0
    with pytest.raises(RuntimeError):
        crit.scores()
    _backward(net, 4)
    window2 = _bn_gate(net.bn2).square().float()
    crit.accumulate()
    second = crit.step()
    torch.testing.assert_close(second["conv2"], 0.9 * window1 + 0.1 * window2)


def test_square_of_minibatch_gradient_not_square_of_window_sum() -> None:
    net = _make_net()
    crit = TaylorFOBN(_graph(net))
    gates = []
    for seed in (1, 2):
        _backward(net, seed)
        gates.append(_bn_gate(net.bn1).float())
        crit.accumulate()
    mean_of_squares = (gates[0].square() + gates[1].square()) / 2
    square_of_mean = ((gates[0] + gates[1]) / 2).square()
    torch.testing.assert_close(crit.scores()["conv1"], mean_of_squares)
    assert not torch.allclose(crit.scores()["conv1"], square_of_mean)


def test_reset_clears_window_and_momentum() -> None:
    net = _make_net()
    crit = TaylorFOBN(_graph(net), momentum=0.5)
    _backward(net, 1)
    crit.accumulate()
    crit.step()
    _backward(net, 2)
    crit.accumulate()
    crit.reset()
    assert crit.num_accumulated == 0
    _backward(net, 3)
    crit.accumulate()
    torch.testing.assert_close(crit.step()["conv1"], _bn_gate(net.bn1).square().float())  # no stale momentum


def test_taylor_fo_weight_sum_of_squares() -> None:
    net = _make_net()
    crit = TaylorFOWeight(_graph(net))
    _backward(net, 1)
    crit.accumulate()
    expected = (net.conv2.weight * net.conv2.weight.grad).square().sum((1, 2, 3)).float()
    torch.testing.assert_close(crit.scores()["conv2"], expected)


def test_weight_magnitude_and_bn_scale_hand_set() -> None:
    net = _make_net()
    with torch.no_grad():
        net.conv1.weight.zero_()
        net.conv1.weight[2, 0, 0, 0] = 3.0
        net.conv1.weight[1, 1, 1, 1] = -2.0
        net.bn1.weight.copy_(torch.tensor([0.5, -4.0, 1.0, 0.0]))
    graph = _graph(net)
    torch.testing.assert_close(WeightMagnitude(graph).scores()["conv1"], torch.tensor([0.0, 4.0, 9.0, 0.0]))
    torch.testing.assert_close(WeightMagnitude(graph, p=1).scores()["conv1"], torch.tensor([0.0, 2.0, 3.0, 0.0]))
    torch.testing.assert_close(BNScale(graph).scores()["conv1"], torch.tensor([0.5, 4.0, 1.0, 0.0]))
    with pytest.raises(ValueError):
        WeightMagnitude(graph, p=3)
    with pytest.raises(ValueError, match="no BatchNorm"):
        BNScale(DependencyGraph(TinyLeNet(), torch.zeros(1, 1, 6, 6)))


def test_random_deterministic_by_seed() -> None:
    graph = _graph(_make_net())
    a, b, c = RandomImportance(graph, seed=3), RandomImportance(graph, seed=3), RandomImportance(graph, seed=4)
    sa, sb, sc = a.scores(), b.scores(), c.scores()
    torch.testing.assert_close(sa["conv1"], sb["conv1"])
    assert not torch.allclose(sa["conv1"], sc["conv1"])
    assert float(sa["conv2"].min()) >= 0.0 and float(sa["conv2"].max()) <= 5.0
    a.reset()
    torch.testing.assert_close(a.scores()["conv1"], sa["conv1"])


def test_criteria_leave_model_unchanged() -> None:
    net = _make_net()
    x, _ = _batch(1)
    before = net(x).detach()
    state = {k: v.clone() for k, v in net.named_parameters()}
    for crit in (TaylorFO(_graph(net), bn_closed_form=False), TaylorSO(_graph(net)), TaylorFOFG(_graph(net))):
        torch.testing.assert_close(net(x), before)  # gates of ones
        crit.remove()
    assert all(not m._forward_hooks for m in net.modules())
    for k, v in net.named_parameters():
        torch.testing.assert_close(v, state[k])


# ---------------------------------------------------------------------------------------------- graph and surgery
def _random_keep(graph: DependencyGraph, frac: float, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keep = [torch.rand(grp.size, generator=g) > frac for grp in graph.groups]
    for k in keep:
        k[0] = True
    return keep


def _check_surgery(
    model: nn.Module, x: torch.Tensor, frac: float = 0.4, graph: DependencyGraph | None = None
) -> tuple[DependencyGraph, nn.Module]:
    model.eval()
    if graph is None:
        graph = DependencyGraph(model, x)
        graph.set_keep(_random_keep(graph, frac, seed=1))
    with torch.no_grad():
        full = model(x)
        with graph.masked():
            masked = model(x)
        pruned = remove_channels(graph)
        out = pruned(x)
    assert not torch.allclose(masked, full, atol=1e-6 * float(full.abs().max()))  # the masks changed something
    torch.testing.assert_close(out, masked, rtol=1e-4, atol=1e-5 * float(masked.abs().max()))
    assert count_macs_and_params(pruned, tuple(x.shape)) == graph.count()
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert [type(m) for m in pruned.modules()] == [type(m) for m in model.modules()]
    return graph, pruned


def _bn_stats(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial eval statistics and affine parameters
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)


@pytest.mark.parametrize(
    ("arch", "n_groups", "n_channels"),
    [
        ("resnet18", 12, 2880),  # 4 shared residual-stage groups + conv1 of each of the 8 blocks
        # the reference's 11,392 gate units + the stem's 64
        pytest.param("resnet50", 37, 11456, marks=pytest.mark.slow),
        # 8 conv + 2 hidden fc, as the reference's 10,944 gate units
        pytest.param("vgg11_bn", 10, 10944, marks=pytest.mark.slow),
        ("mobilenet_v2", 25, 9128),
        pytest.param("densenet121", 120, 10240, marks=pytest.mark.slow),
    ],
)
def test_torchvision_groups_and_surgery_equal_masked(arch: str, n_groups: int, n_channels: int) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=7)
    _bn_stats(model)
    x = torch.randn(2, 3, 32, 32)
    graph, pruned = _check_surgery(model, x)
    assert len(graph.groups) == n_groups and graph.num_channels == n_channels
    names = {g.name for g in graph.groups}
    assert not any("fc" == n or n.startswith("classifier.6") for n in names)  # the classifier output is fixed


@pytest.mark.parametrize("arch", ["efficientnet_b0", "convnext_tiny"])
def test_prunes_to_60_percent_of_the_macs_with_surgery_equal_to_masking(arch: str) -> None:
    """Squeeze-excitation (sigmoid-scaled channels), stochastic depth, channels-last Linear layers after a permute and
    LayerNorm over channels (ConvNeXt: its MLP hidden channels are prunable) no longer stop pruning."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=7).eval()
    _bn_stats(model)
    with torch.no_grad():  # ConvNeXt's layer scale starts at 1e-6: the blocks would barely change the output
        for name, p in model.named_parameters():
            if name.endswith("layer_scale"):
                p.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    graph = DependencyGraph(model, x)
    pruner = Pruner(graph, RandomImportance(graph), PruneTarget(macs_ratio=0.6), prune_per_step=200, frequency=1)
    while not pruner.done:
        pruner.prune_step()
    assert graph.count()[0] <= 0.6 * pruner.full_macs
    pruner.detach()
    _check_surgery(model, x, graph=graph)


def test_sigmoid_channels_only_prunable_through_a_product() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
            self.gated = nn.Conv2d(3, 6, 1)  # its sigmoid output reaches a conv: a removed channel would be 1/2
            self.head = nn.Conv2d(14, 5, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.conv(x))
            y = y * torch.sigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))  # squeeze-excitation
            z = torch.sigmoid(self.gated(x))
            return self.head(torch.cat([y, z], 1)).mean((2, 3))

    torch.manual_seed(0)
    graph, _ = _check_surgery(Net(), torch.randn(2, 3, 6, 6), frac=0.3)
    groups = {g.name: g for g in graph.groups}
    assert set(groups) == {"conv", "fc1"}  # fc2 joins conv's group; "gated" is fixed
    assert {p for p, _ in groups["conv"].producers} == {"conv", "fc2"}


def test_resnet_groups_follow_the_residual_stream() -> None:
    model = torchvision.models.resnet50()
    graph = DependencyGraph(model, torch.zeros(1, 3, 32, 32))
    stage = next(g for g in graph.groups if g.name == "layer1.0.conv3")
    assert {p for p, _ in stage.producers} == {
        "layer1.0.conv3",
        "layer1.0.downsample.0",
        "layer1.1.conv3",
        "layer1.2.conv3",
    }
    assert {c for c, _, _ in stage.consumers} == {
        "layer1.1.conv1",
        "layer1.2.conv1",
        "layer2.0.conv1",
        "layer2.0.downsample.0",
    }
    assert all(gp.is_bn for gp in stage.gate_points)  # the BNs producing the stream (taylor_fo_bn_sum)
    # the reference's shared skip gate: after each block's final ReLU, i.e. on every block's output
    assert [gp.module for gp in stage.stream_points] == ["layer1.0", "layer1.1", "layer1.2"]
    last = next(g for g in graph.groups if g.name == "layer4.0.conv3")
    assert [gp.module for gp in last.stream_points] == ["layer4.0", "layer4.1", "layer4.2"]  # not the global pool
    assert not any(g.stream_points for g in graph.groups if "conv3" not in g.name)
    assert stage.size == 256


class _Block(nn.Module):
    """Basic residual block; the stage's shared skip gate (if given) scales its output after the final ReLU."""

    def __init__(self, cin: int, cout: int, gate: nn.Module | None) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if cin != cout else None
        self.relu = nn.ReLU()
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out = self.relu(out + (self.down(x) if self.down is not None else x))
        return self.gate(out) if self.gate is not None else out


class _TinyResNet(nn.Module):
    def __init__(self, gated: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.skip_gate = Gate(6) if gated else None  # one per stage, shared by its blocks (reference resnet.py)
        self.blocks = nn.Sequential(_Block(4, 6, self.skip_gate), _Block(6, 6, self.skip_gate))
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def test_taylor_fo_bn_residual_stream_equals_official_skip_gate() -> None:
    torch.manual_seed(0)
    gated = _TinyResNet(gated=True).double()
    with torch.no_grad():
        for m in gated.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    plain = _TinyResNet().double()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    graph = _graph(plain)
    stream = next(g for g in graph.groups if g.stream_points)
    assert [gp.module for gp in stream.stream_points] == ["blocks.0", "blocks.1"] and stream.size == 6
    skip, bn_sum = TaylorFO(graph), make_criterion("taylor_fo_bn_sum", graph)
    default = make_criterion("taylor_fo_bn", graph)
    assert default.residual == "skip_gate"  # the reference's criterion is the default
    default.remove()
    expected_window = torch.zeros(6, dtype=torch.float64)
    for seed in (1, 2):
        _backward(gated, seed)
        expected_window += gated.skip_gate.weight.grad.square() / 2  # (z * dL/dz)^2 per minibatch, window mean
        _backward(plain, seed)
        skip.accumulate()
        bn_sum.accumulate()
    assert expected_window.abs().max() > 1e-8
    scores, other = skip.scores(), bn_sum.scores()
    torch.testing.assert_close(scores[stream.name], expected_window.float(), rtol=1e-5, atol=1e-12)
    assert not torch.allclose(other[stream.name], scores[stream.name], rtol=1e-2)  # bn_sum is another criterion
    for g in graph.groups:  # other groups: the same gate-after-BN scores under both
        if g is not stream:
            torch.testing.assert_close(scores[g.name], other[g.name])
    skip.remove()
    assert all(not m._forward_hooks for m in plain.modules())
    with pytest.raises(ValueError, match="residual"):
        TaylorFO(graph, residual="nosuch")


def test_sequential_concat_depthwise_grouped_and_reuse() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU6())
            self.dw = nn.Conv2d(14, 14, 3, padding=1, groups=14, bias=True)
            self.grouped = nn.Conv2d(14, 10, 1, groups=2)  # fixes its input and output channels
            self.head = nn.Sequential(
                nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(40, 12), nn.ReLU(), nn.Linear(12, 4)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.cat([self.a(x), self.b(x)], dim=1)
            y = self.dw(y) + y
            return self.head(self.grouped(y))

    torch.manual_seed(0)
    model = Custom()
    x = torch.randn(2, 3, 8, 8)
    graph = DependencyGraph(model, x)
    names = {g.name: g for g in graph.groups}
    assert set(names) == {"head.3"}  # the grouped conv fixes a.0/b.0 (through dw and the add); fc hidden is free
    seq = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 5, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )
    _bn_stats(seq)
    graph, pruned = _check_surgery(seq, x)
    assert [g.name for g in graph.groups] == ["0", "6"]
    assert graph.groups[0].producers == [("0", 0), ("3", 0)]  # depthwise output tied to its input
    assert pruned[3].groups == pruned[3].in_channels == pruned[3].out_channels == int(graph.keep_masks()[0].sum())
    # concat (DenseNet-style) with a consumer BN: each input keeps its own group at its offset

    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 5, 3, padding=1)
            self.bn, self.out = nn.BatchNorm2d(9), nn.Conv2d(9, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.bn(torch.cat([self.c1(x), self.c2(x)], 1)))).mean((2, 3))

    model = Cat()
    _bn_stats(model)
    graph, _ = _check_surgery(model, x, frac=0.5)
    assert [(g.name, g.bns, g.consumers) for g in graph.groups] == [
        ("c1", [("bn", 0)], [("out", 0, 1)]),
        ("c2", [("bn", 4)], [("out", 4, 1)]),
    ]


def test_pruned_model_saves_and_reloads(tmp_path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32)
    graph = DependencyGraph(model, x)
    graph.set_keep(_random_keep(graph, 0.5, seed=2))
    pruned = remove_channels(graph)
    path = tmp_path / "pruned.pt"
    torch.save(pruned, path)
    again = torch.load(path, weights_only=False)
    buffer = io.BytesIO()
    torch.save(pruned.state_dict(), buffer)
    buffer.seek(0)
    rebuilt = shrink_to_state_dict(torchvision.models.resnet18(num_classes=5), torch.load(buffer, weights_only=True))
    with torch.no_grad():
        ref = pruned(x)
        torch.testing.assert_close(again(x), ref)
        torch.testing.assert_close(rebuilt.eval()(x), ref)


def test_keep_mask_errors_and_untraceable_model() -> None:
    graph = _graph(_make_net())
    with pytest.raises(ValueError, match="cannot remove all"):
        graph.set_keep([torch.zeros(4, dtype=torch.bool), torch.ones(6, dtype=torch.bool)])
    with pytest.raises(ValueError, match="has 6 channels"):
        graph.set_keep([torch.ones(4, dtype=torch.bool), torch.ones(5, dtype=torch.bool)])

    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x  # data-dependent control flow

    with pytest.raises(TypeError, match="cannot trace"):
        DependencyGraph(Branchy(), torch.zeros(1, 3, 4, 4))


# ---------------------------------------------------------------------------------------------- oracle
def test_oracle_is_the_loss_change_of_removing_each_channel() -> None:
    net = _make_net().eval()
    graph = _graph(net)
    batches = [_batch(1), _batch(2)]

    def loss_fn(m: nn.Module, b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(m(b[0]), b[1])

    oracle = oracle_importance(graph, batches, loss_fn)
    # by hand for channel 2 of conv1: zero its BN output (gamma = beta = 0) and compare losses
    expected = 0.0
    for b in batches:
        base = float(loss_fn(net, b).detach())
        cut = _make_net().eval()
        with torch.no_grad():
            cut.bn1.weight[2] = 0.0
            cut.bn1.bias[2] = 0.0
        expected += abs(float(loss_fn(cut, b).detach()) - base) / 2
    assert oracle["conv1"][2].item() == pytest.approx(expected, rel=1e-5)
    assert oracle["conv1"].shape == (4,) and oracle["conv2"].shape == (6,)
    assert all(p._forward_hooks == {} for p in net.modules())


def test_rank_correlation_known_answers() -> None:
    a = {"x": torch.tensor([1.0, 2.0, 3.0]), "y": torch.tensor([4.0, 5.0])}
    assert rank_correlation(a, a)["spearman"] == pytest.approx(1.0)
    rev = {"x": torch.tensor([5.0, 4.0, 3.0]), "y": torch.tensor([2.0, 1.0])}
    r = rank_correlation(rev, a)
    assert r["spearman"] == pytest.approx(-1.0) and r["kendall"] == pytest.approx(-1.0) and r["n"] == 5
    # one swapped pair out of 4 ranks: rho = 1 - 6 * 2 / (4 * 15) = 0.8, tau = (5 - 1) / 6
    r = rank_correlation(torch.tensor([1.0, 2.0, 4.0, 3.0]), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert r["spearman"] == pytest.approx(0.8) and r["kendall"] == pytest.approx(4 / 6)
    dead = rank_correlation(torch.tensor([0.0, 0.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 2.0, 1.0]), exclude_zero=True)
    assert dead["n"] == 2 and dead["spearman"] == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        rank_correlation({"x": torch.ones(2)}, {"z": torch.ones(2)})


# ---------------------------------------------------------------------------------------------- engine
def test_schedule_bookkeeping_first_step_after_frequency_plus_one() -> None:
    net = _make_net()
    graph = _graph(net)
    pruner = Pruner(graph, RandomImportance(graph), PruneTarget(steps=3), prune_per_step=2, frequency=4)
    ran = []
    for it in range(20):
        _backward(net, it)
        ran.append(pruner.after_backward())
    assert [i for i, r in enumerate(ran) if r] == [4, 8, 12]  # the 5th, 9th and 13th minibatch (spec A.3, H.5)
    assert pruner.done and pruner.removed == 6
    assert [r.removed for r in pruner.history] == [2, 4, 6]
    assert all(int(k.sum()) >= 1 for k in graph.keep_masks())


def test_engine_removes_lowest_scores_globally_and_hits_macs_target() -> None:
    net = _make_net()
    graph = _graph(net)

    class Fixed(RandomImportance):
        def _static(self) -> dict[str, torch.Tensor]:
            return {"conv1": torch.tensor([5.0, 0.1, 6.0, 7.0]), "conv2": torch.tensor([0.3, 9, 9, 0.2, 9, 0.4])}

    pruner = Pruner(graph, Fixed(graph), PruneTarget(channels=3), prune_per_step=10, frequency=1)
    pruner.prune_step()
    assert [k.tolist() for k in graph.keep_masks()] == [
        [True, False, True, True],
        [False, True, True, False, True, True],
    ]
    assert pruner.done and pruner.removed == 3
    # a MACs target stops at the first channel that reaches it
    graph2 = _graph(net)
    full, _ = graph2.count()
    pruner2 = Pruner(graph2, Fixed(graph2), PruneTarget(macs_ratio=0.8), prune_per_step=8, frequency=1)
    pruner2.prune_step()
    macs = pruner2.history[-1].macs
    assert macs <= 0.8 * full
    keep = graph2.keep_masks()
    last = max(
        ((i, c) for i, k in enumerate(keep) for c in range(k.numel()) if not k[c]),
        key=lambda ic: [[5.0, 0.1, 6.0, 7.0], [0.3, 9, 9, 0.2, 9, 0.4]][ic[0]][ic[1]],
    )
    keep[last[0]][last[1]] = True  # one channel fewer would not have reached the target
    assert graph2.count(keep)[0] > 0.8 * full
    pruner.detach()
    pruner2.detach()


def test_prune_function_returns_smaller_equivalent_network() -> None:
    torch.manual_seed(0)
    net = _make_net().float()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)) for _ in range(6)]
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    pruned, pruner = prune(
        net, data, "taylor_fo_bn", PruneTarget(channels=4), optimizer=opt, prune_per_step=2, frequency=2
    )
    assert pruner.done and pruner.removed == 4
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in net.parameters())
    net.eval()
    pruned.eval()
    with torch.no_grad(), pruner.graph.masked():
        torch.testing.assert_close(pruned(data[0][0]), net(data[0][0]))
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("criterion", ["taylor_fo_fg", "taylor_fo_bn", "taylor_so"])
def test_criterion_hooks_detached_when_pruning_ends(criterion: str) -> None:
    """Pruning on minibatches of 8, then fine-tuning on one of 5: no hook of the criterion may still be recording
    (FO-FG's per-example recorder crashed backward on the new batch size); the masks stay until finalize."""
    net = _make_net()
    graph = _graph(net)
    pruner = Pruner(graph, make_criterion(criterion, graph), PruneTarget(channels=2), prune_per_step=1, frequency=1)
    n_mask_hooks = len(pruner._handles)
    it = 0
    while not pruner.done:
        net.zero_grad()
        x, y = _batch(it, n=8)
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward(retain_graph=criterion == "taylor_so")
        pruner.after_backward(loss)
        it += 1
    assert it == 3 and pruner.removed == 2
    hooks = sum(len(m._forward_hooks) for m in net.modules())
    assert hooks == n_mask_hooks  # only the masks are left
    for n in (8, 5):  # fine-tuning: a full minibatch, then the epoch's short last one
        x, y = _batch(99, n=n)
        net.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()  # n = 5 raised RuntimeError for FO-FG before the fix
        assert not pruner.after_backward()
    with torch.no_grad():
        assert net(x).shape == (5, 5)
        keep = graph.keep_masks()
        out = net.bn1(net.conv1(x))  # masked channels are still zero after pruning ended
        assert keep[0].all() or out[:, ~keep[0]].abs().max() == 0
    pruner.finalize()
    assert all(not m._forward_hooks for m in net.modules())


def test_obd_equals_gate_hessian_diagonal() -> None:
    gated = _make_net(gated=True)
    plain = _make_net(gated=False)
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gate" not in k})
    crit = make_criterion("obd", _graph(plain))
    x, y = _batch(4)
    gates = (gated.gate1.weight, gated.gate2.weight)
    grads = torch.autograd.grad(nn.functional.cross_entropy(gated(x), y), gates, create_graph=True)
    crit.accumulate(nn.functional.cross_entropy(plain(x), y))
    for group, gate, g in zip(("conv1", "conv2"), gates, grads, strict=True):
        hzz = torch.stack([torch.autograd.grad(g[c], gate, retain_graph=True)[0][c] for c in range(g.numel())])
        assert (hzz < 0).any() or hzz.abs().max() > 1e-8
        torch.testing.assert_close(crit.scores()[group], (gate * hzz).detach().float(), rtol=1e-5, atol=1e-12)
    crit.remove()


def test_taylor_output_mean_abs_normalised_per_layer() -> None:
    plain = _make_net()
    crit = make_criterion("taylor_output", _graph(plain))
    x, y = _batch(5, n=4)
    nn.functional.cross_entropy(plain(x), y).backward()
    crit.accumulate()
    a = plain.bn2(plain.conv2(torch.relu(plain.bn1(plain.conv1(x)))))  # the gate point: conv2's BN output
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(plain.fc(torch.relu(a).mean((2, 3))), y), a)
    raw = (a * grad).abs().mean((0, 2, 3))  # |a dL/da| per element, mean over n, h, w (ICLR 2017)
    expected = raw / (raw.norm() + 1e-8)
    assert not torch.allclose(raw, expected)
    torch.testing.assert_close(crit.scores()["conv2"], expected.detach().float(), rtol=1e-5, atol=1e-9)
    crit.remove()
    assert all(not m._forward_hooks for m in plain.modules())


def test_static_criteria_take_momentum() -> None:
    net = _make_net()
    graph = _graph(net)
    crit = WeightMagnitude(graph, momentum=0.5)
    first = crit.step()["conv1"]
    with torch.no_grad():
        net.conv1.weight.mul_(2.0)
    torch.testing.assert_close(crit.step()["conv1"], 0.5 * first + 0.5 * 4.0 * first)
    assert BNScale(graph, momentum=0.9).momentum == 0.9 and RandomImportance(graph, momentum=0.9).momentum == 0.9


class _FixedScores(RandomImportance):
    values = {"conv1": torch.tensor([10.0, 20, 30, 40]), "conv2": torch.tensor([1.0, 2, 3, 4, 5, 6])}

    def __init__(self, graph: DependencyGraph) -> None:
        super().__init__(graph)
        self.steps = 0

    def _static(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.values.items()}

    def step(self) -> dict[str, torch.Tensor]:
        self.steps += 1
        return super().step()


def test_engine_l2_normalisation_threshold_and_fixed_criteria() -> None:
    net = _make_net()
    removed = {}
    for l2 in (False, True):
        graph = _graph(net)
        pruner = Pruner(graph, _FixedScores(graph), PruneTarget(channels=3), 3, 1, l2_normalization_per_layer=l2)
        pruner.prune_step()
        removed[l2] = [(~k).nonzero().flatten().tolist() for k in graph.keep_masks()]
        pruner.detach()
    assert removed[False] == [[], [0, 1, 2]]  # raw scores: the small layer goes first
    assert removed[True] == [[0], [0, 1]]  # per-layer l2: 0.105, 0.183, 0.210 are the lowest
    # pruning_threshold: no step while the mean loss since the last step exceeds it
    for threshold, steps in ((0.01, 0), (100.0, 2)):
        graph = _graph(net)
        pruner = Pruner(graph, _FixedScores(graph), PruneTarget(steps=5), 1, 2, pruning_threshold=threshold)
        ran = [pruner.after_backward(_backward(net, it)) for it in range(5)]
        assert sum(ran) == steps and pruner.skipped == 2 - steps
        pruner.detach()
    with pytest.raises(ValueError, match="pruning_threshold"):
        graph = _graph(net)
        pruner = Pruner(graph, _FixedScores(graph), PruneTarget(steps=5), 1, 1, pruning_threshold=1.0)
        pruner.after_backward()
        pruner.after_backward()
    pruner.detach()
    # fixed_criteria: scored once, at the first step
    graph = _graph(net)
    crit = _FixedScores(graph)
    pruner = Pruner(graph, crit, PruneTarget(steps=3), 1, 1, fixed_criteria=True)
    for it in range(4):
        pruner.after_backward(_backward(net, it))
    assert crit.steps == 1 and len(pruner.history) == 3
    assert [(~k).nonzero().flatten().tolist() for k in graph.keep_masks()] == [[], [0, 1, 2]]
    pruner.detach()


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
    [
        ("resnet18", 1.814, 11.69),
        pytest.param("resnet34", 3.664, 21.80, marks=pytest.mark.slow),
        pytest.param("resnet50", 4.089, 25.56, marks=pytest.mark.slow),
        pytest.param("resnet101", 7.802, 44.55, marks=pytest.mark.slow),
    ],
)
def test_resnet_macs_match_spec(arch: str, gmacs: float, mparams: float) -> None:
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    macs, params = count_macs_and_params(model, (1, 3, 224, 224))
    # The spec gives 3 decimals (GMACs) and 2 decimals (M params): agree to rounding.
    assert abs(macs / 1e9 - gmacs) <= 0.0005
    assert abs(params / 1e6 - mparams) <= 0.005
