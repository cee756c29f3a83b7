"""Core GAN additions for DG-Net: ASPP with dilated branches, residual patch discriminators (single, multi-scale)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nvresearch.core.gan.aspp import ASPP, dilated_conv_block
from nvresearch.core.gan.residual_discriminators import MultiScaleResidualDiscriminator, ResidualPatchDiscriminator


def test_dilated_block_keeps_size_and_reaches_exactly_the_dilation():
    torch.manual_seed(0)
    block = dilated_conv_block(1, 1, dilation=4, norm="none", pad_type="zero")
    with torch.no_grad():
        block.conv.weight.fill_(1.0)
        block.conv.bias.zero_()
    x = torch.zeros(1, 1, 17, 17)
    x[0, 0, 8, 8] = 1.0
    y = block(x)[0, 0]
    assert y.shape == (17, 17)
    hit = {(int(i), int(j)) for i, j in y.nonzero()}
    assert hit == {(8 + di, 8 + dj) for di in (-4, 0, 4) for dj in (-4, 0, 4)}
    with pytest.raises(ValueError, match="dilation"):
        dilated_conv_block(1, 1, dilation=0)


def test_aspp_shapes_branches_and_receptive_field():
    torch.manual_seed(0)
    aspp = ASPP(8, 4, 16, dilations=(9,), norm="none", activation="lrelu", pad_type="zero")
    assert len(aspp.branches) == 2 and aspp.fuse.conv.in_channels == 8
    x = torch.zeros(1, 8, 31, 31)
    x[0, :, 15, 15] = 1.0
    with torch.no_grad():
        y = aspp(x)[0]
    background = y[:, 12, 12]  # an interior pixel that no branch links to the centre
    # the 1x1 branch sees the centre, the dilated branch also 9 pixels away, nothing in between
    assert not torch.allclose(y[:, 15, 15], background)
    assert not torch.allclose(y[:, 15, 24], background)
    assert torch.allclose(y[:, 15, 20], background)
    full = ASPP(64, 32, 128)
    assert [b[1].conv.dilation for b in full.branches[1:]] == [(3, 3), (6, 6), (9, 9)]
    assert full(torch.randn(1, 64, 20, 12)).shape == (1, 128, 20, 12)  # reflection needs a side > 9


def test_residual_patch_discriminator_layout_and_shapes():
    d = ResidualPatchDiscriminator(3, base_channels=8, num_downsample=3, num_res=2, max_channels=16)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs[:3]] == [1, 3, 3]
    assert [c.stride[0] for c in convs[:7]] == [1, 1, 2, 1, 2, 1, 2]
    assert [c.out_channels for c in convs[:7]] == [8, 8, 8, 8, 16, 16, 16]  # doubled, capped at 16
    assert d(torch.randn(2, 3, 32, 16)).shape == (2, 1, 4, 2)
    with pytest.raises(ValueError, match="num_downsample"):
        ResidualPatchDiscriminator(num_downsample=0)


def test_multiscale_residual_discriminator_pools_between_scales():
    torch.manual_seed(0)
    d = MultiScaleResidualDiscriminator(num_scales=3, base_channels=4, num_downsample=1, num_res=1)
    x = torch.randn(2, 3, 32, 16)
    outs = d(x)
    assert [tuple(o.shape) for o in outs] == [(2, 1, 16, 8), (2, 1, 8, 4), (2, 1, 4, 2)]
    pool = nn.AvgPool2d(3, 2, 1, count_include_pad=False)
    assert torch.allclose(outs[1], d.nets[1](pool(x)))
    assert torch.allclose(outs[2], d.nets[2](pool(pool(x))))
    assert sum(p.numel() for p in d.nets[0].parameters()) == sum(p.numel() for p in d.nets[2].parameters())
