"""Hot-swapping nn.Conv2d layers for PAC (Su et al. 2019, PAC-FCN): same weights, same function at the start."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from nvresearch.core.layers import (
    PacConv2d,
    PacConvTranspose2d,
    SwappedPacConv2d,
    load_official_state_dict,
    pac_from_conv,
    swap_conv_for_pac,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _vgg() -> nn.Module:
    return torchvision.models.vgg11(weights=None).features[:8].eval()  # conv1, pool, conv2, pool, conv3_1, conv3_2


def test_swapped_network_is_unchanged_at_initialisation() -> None:
    net = _vgg()
    x = torch.randn(2, 3, 32, 32)
    want = net(x)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    guide = swap_conv_for_pac(net, ["3", "6"])
    assert isinstance(net[3], SwappedPacConv2d) and isinstance(net[6], PacConv2d)
    assert net[3].weight.shape == (128, 64, 3, 3)
    # the state dict keeps nn.Conv2d's names and values: pretrained weights load as before
    assert set(net.state_dict()) == set(state)
    net.load_state_dict(state)
    assert torch.equal(net(x), want)  # no guidance: exactly the original convolutions
    features = torch.relu(torch.randn(2, 16, 32, 32)) * 50  # resized to 16x16 and 8x8 for the two layers
    with guide(features):
        out = net(x)
    # x 1e-4: K = exp(-0.5 |1e-4 df|^2) ~ 1 - 1e-4 for features of this size, so the output moves by ~1e-4
    torch.testing.assert_close(out, want, rtol=1e-3, atol=5e-4)
    assert not torch.equal(out, want)  # the guidance was used
    assert guide.value is None


def test_guidance_takes_effect_and_gets_gradients() -> None:
    net = _vgg()
    x = torch.randn(1, 3, 16, 16)
    want = net(x)
    guide = swap_conv_for_pac(net, ["3"], guidance_scale=1.0)
    features = torch.randn(1, 4, 16, 16, requires_grad=True)
    with guide(features):
        out = net(x)
    assert (out - want).abs().max() > 1e-2
    out.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert net[3].weight.grad is not None


def test_pac_from_conv_copies_geometry_and_weights() -> None:
    conv = nn.Conv2d(3, 5, (3, 5), stride=2, padding=(1, 2), dilation=1, bias=False).double()
    pac = pac_from_conv(conv)
    assert (pac.kernel_size, pac.stride, pac.padding, pac.bias) == ((3, 5), (2, 2), (1, 2), None)
    assert pac.weight.dtype == torch.float64 and torch.equal(pac.weight, conv.weight)
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    torch.testing.assert_close(pac(x, torch.zeros(2, 2, 9, 10, dtype=torch.float64)), conv(x))  # K == 1


@pytest.mark.parametrize(
    ("conv", "exc", "match"),
    [
        (nn.Conv2d(4, 4, 3, groups=2), ValueError, "grouped"),
        (nn.Conv2d(4, 4, 2), ValueError, "odd kernel"),
        (nn.Conv2d(4, 4, 3, padding="same"), ValueError, "padding='same'"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), ValueError, "padding_mode='reflect'"),
        (nn.Linear(3, 3), TypeError, "expected an nn.Conv2d, got Linear"),
    ],
)
def test_unsupported_layers_are_refused(conv: nn.Module, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        pac_from_conv(conv)  # type: ignore[arg-type]


def test_swap_errors_name_the_problem() -> None:
    net = _vgg()
    with pytest.raises(KeyError, match=r"no submodule named \['99'\].*nn.Conv2d layers are \['0', '3', '6'"):
        swap_conv_for_pac(net, ["99"])
    with pytest.raises(ValueError, match="names is empty"):
        swap_conv_for_pac(net, [])
    with pytest.raises(ValueError, match=r"guidance must be a \(B, F, H, W\) tensor"):
        with swap_conv_for_pac(net, ["0"])(torch.zeros(3, 4, 4)):
            pass


def test_official_state_dict_loads_with_transposed_weights_flipped() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = PacConv2d(2, 3, 3, padding=1)
            self.up = nn.ModuleList([PacConvTranspose2d(3, 2, 5, stride=2, padding=2, output_padding=1)])

    src, dst = Net(), Net()
    official = {k: v.clone() for k, v in src.state_dict().items()}
    official["up.0.weight"] = src.up[0].weight.detach().flip(-2, -1)  # how the official layer stores it
    load_official_state_dict(dst, official)
    assert torch.equal(dst.up[0].weight, src.up[0].weight)
    assert torch.equal(dst.conv.weight, src.conv.weight)  # plain PAC weights are not touched
    assert torch.equal(official["up.0.weight"], src.up[0].weight.detach().flip(-2, -1))  # input left as it was
