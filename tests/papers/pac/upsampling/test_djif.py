"""DJIF as the official PAC code builds it: no residual, the official branch paddings, the official state-dict names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.pac.upsampling.models import DJIF, DJIFResidual


def _official_layout(guide_channels: int = 3) -> nn.Module:
    """A hand-built DJIF in the official layout: Sequential indices 0-4, target/guidance paddings 2, 2, 2."""

    def branch(c_in: int, widths: tuple[int, int, int], pads: tuple[int, int, int]) -> nn.Sequential:
        a, b, c = widths
        return nn.Sequential(
            nn.Conv2d(c_in, a, 9, padding=pads[0]),
            nn.ReLU(),
            nn.Conv2d(a, b, 1, padding=pads[1]),
            nn.ReLU(),
            nn.Conv2d(b, c, 5, padding=pads[2]),
        )

    ref = nn.Module()
    ref.branch_t = branch(1, (96, 48, 1), (2, 2, 2))
    ref.branch_g = branch(guide_channels, (96, 48, 1), (2, 2, 2))
    ref.branch_joint = branch(2, (64, 32, 1), (4, 0, 2))
    return ref


def _reference_forward(ref: nn.Module, lr: Tensor, guide: Tensor, factor: int) -> Tensor:
    b, c, h, w = lr.shape
    up = F.interpolate(lr.reshape(b * c, 1, h, w), scale_factor=factor, mode="bilinear", align_corners=False)
    g = ref.branch_g(guide).repeat_interleave(c, dim=0)
    return ref.branch_joint(torch.cat([ref.branch_t(up), g], dim=1)).reshape(b, c, h * factor, w * factor)


@pytest.mark.parametrize("channels", [1, 2])
def test_djif_equals_the_official_layout_on_identical_weights(channels: int) -> None:
    torch.manual_seed(0)
    ref = _official_layout().double()
    net = DJIF(4, channels=channels).double()
    net.load_state_dict(ref.state_dict(), strict=True)  # the official names load as they are
    assert [k for k in net.state_dict() if k.startswith("branch_t")] == [
        "branch_t.0.weight",
        "branch_t.0.bias",
        "branch_t.2.weight",
        "branch_t.2.bias",
        "branch_t.4.weight",
        "branch_t.4.bias",
    ]
    lr, guide = torch.rand(2, channels, 6, 5, dtype=torch.float64), torch.rand(2, 3, 24, 20, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(lr, guide), _reference_forward(ref, lr, guide, 4), rtol=0, atol=1e-12)


def test_djif_padding_and_residual_change_the_output() -> None:
    """Same-padding (our earlier layout) differs from the official one near the border only; the residual variant
    adds exactly the bilinear upsampling."""
    torch.manual_seed(1)
    official = DJIF(4).double()
    same = DJIF(4, same_padding=True).double()
    same.load_state_dict(official.state_dict())
    lr, guide = torch.rand(1, 1, 8, 8, dtype=torch.float64), torch.rand(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        diff = (official(lr, guide) - same(lr, guide)).abs()[0, 0]
        assert diff[:4].max() > 1e-4 and diff[:, -4:].max() > 1e-4  # the branch paddings reach the border
        assert diff[10:22, 10:22].max() < 1e-12  # the interior, beyond every receptive field's reach, is identical
        residual = DJIFResidual(4).double()
        residual.load_state_dict(official.state_dict())
        up = F.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)
        torch.testing.assert_close(residual(lr, guide), same(lr, guide) + up)
    assert not official.residual and not official.same_padding
