"""Atrous spatial pyramid pooling (Chen et al., DeepLab v3, 2017) in the GAN block style (pad -> conv -> norm -> act).

DG-Net ends its structure encoder with one (dilations 3 / 6 / 9); the block is generic: parallel branches that see
the same feature map at several receptive fields, concatenated and fused by a 1x1 convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nvresearch.core.gan.blocks import Conv2dBlock


def dilated_conv_block(
    in_channels: int,
    out_channels: int,
    dilation: int,
    norm: str = "instance",
    activation: str = "none",
    pad_type: str = "reflect",
) -> Conv2dBlock:
    """A 3x3 :class:`~nvresearch.core.gan.blocks.Conv2dBlock` with dilation ``dilation``, padded by ``dilation``
    pixels so that the spatial size is kept.

    Shape:
        x: ``(B, in_channels, H, W)``; returns ``(B, out_channels, H, W)``.
    """
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    block = Conv2dBlock(in_channels, out_channels, 3, 1, dilation, norm=norm, activation=activation, pad_type=pad_type)
    # Conv2dBlock has no dilation argument; its convolution is replaced by a dilated one of the same shape.
    block.conv = nn.Conv2d(in_channels, out_channels, 3, 1, dilation=dilation, bias=True)
    return block


class ASPP(nn.Module):
    """Parallel branches at several dilations, concatenated and fused by a 1x1 convolution.

    Branch 0 is a 1x1 convolution + norm (no activation); branch ``k >= 1`` is a 1x1 convolution + norm + activation
    followed by a 3x3 convolution of dilation ``dilations[k - 1]`` + norm (no activation). The fusion is a 1x1
    convolution + norm without activation. Every convolution has a bias.

    Args:
        in_channels: width of the input.
        branch_channels: width of each branch.
        out_channels: width after the fusion.
        dilations: one 3x3 branch per entry (DG-Net: 3, 6, 9).
        norm / activation / pad_type: as in :class:`~nvresearch.core.gan.blocks.Conv2dBlock`.

    Shape:
        x: ``(B, in_channels, H, W)``; returns ``(B, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        branch_channels: int,
        out_channels: int,
        dilations: Sequence[int] = (3, 6, 9),
        norm: str = "instance",
        activation: str = "lrelu",
        pad_type: str = "reflect",
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [
            Conv2dBlock(in_channels, branch_channels, 1, 1, 0, norm=norm, activation="none", pad_type=pad_type)
        ]
        for d in dilations:
            branches.append(
                nn.Sequential(
                    Conv2dBlock(
                        in_channels, branch_channels, 1, 1, 0, norm=norm, activation=activation, pad_type=pad_type
                    ),
                    dilated_conv_block(branch_channels, branch_channels, int(d), norm=norm, pad_type=pad_type),
                )
            )
        self.branches = nn.ModuleList(branches)
        width = branch_channels * len(branches)
        self.fuse = Conv2dBlock(width, out_channels, 1, 1, 0, norm=norm, activation="none", pad_type=pad_type)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))
