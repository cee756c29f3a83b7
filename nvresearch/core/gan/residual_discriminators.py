"""Patch discriminators of 3x3 convolutions with residual blocks, single and multi-scale (DG-Net's ``MsImageDis``).

Unlike :class:`~nvresearch.core.gan.discriminators.PatchDiscriminator` (4x4 stride-2 convolutions), each
down-sampling stage is a 3x3 convolution followed by a 3x3 stride-2 convolution, the input enters through a 1x1
convolution, and residual blocks sit before the 1x1 output convolution.
"""

from __future__ import annotations

from torch import Tensor, nn

from nvresearch.core.gan.blocks import Conv2dBlock, ResBlock
from nvresearch.core.gan.discriminators import MultiScaleDiscriminator


class ResidualPatchDiscriminator(nn.Module):
    """1x1 conv, then ``num_downsample`` x [3x3 conv, 3x3 stride-2 conv], residual blocks and a 1x1 conv to one map.

    Widths: ``base_channels`` up to the first stride-2 convolution, doubled (capped at ``max_channels``) by each
    later stride-2 convolution. Every block is pad -> conv -> norm -> activation with a bias; the residual blocks
    keep the width (:class:`~nvresearch.core.gan.blocks.ResBlock`); the output convolution has no padding.

    Shape:
        x: ``(B, in_channels, H, W)``; returns ``(B, 1, ceil(H / 2^num_downsample), ceil(W / 2^num_downsample))``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        num_downsample: int = 2,
        num_res: int = 4,
        norm: str = "none",
        activation: str = "lrelu",
        pad_type: str = "reflect",
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        if num_downsample < 1:
            raise ValueError(f"num_downsample must be >= 1, got {num_downsample}")
        kw = {"norm": norm, "activation": activation, "pad_type": pad_type}
        ch = base_channels
        layers: list[nn.Module] = [
            Conv2dBlock(in_channels, ch, 1, 1, 0, **kw),
            Conv2dBlock(ch, ch, 3, 1, 1, **kw),
            Conv2dBlock(ch, ch, 3, 2, 1, **kw),
        ]
        for _ in range(num_downsample - 1):
            nxt = min(ch * 2, max_channels)
            layers += [Conv2dBlock(ch, ch, 3, 1, 1, **kw), Conv2dBlock(ch, nxt, 3, 2, 1, **kw)]
            ch = nxt
        layers += [ResBlock(ch, norm=norm, activation=activation, pad_type=pad_type) for _ in range(num_res)]
        layers.append(nn.Conv2d(ch, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class MultiScaleResidualDiscriminator(MultiScaleDiscriminator):
    """``num_scales`` independent :class:`ResidualPatchDiscriminator` on the input, then on it average-pooled by 2
    (3x3, stride 2, padding ignored) between scales: the pyramid of
    :class:`~nvresearch.core.gan.discriminators.MultiScaleDiscriminator` with a residual network per scale.

    Args:
        num_scales: how many resolutions (DG-Net: 3).
        **patch_kwargs: the arguments of :class:`ResidualPatchDiscriminator`.

    Shape:
        x: ``(B, C, H, W)``; returns a list of ``num_scales`` maps, finest first.
    """

    def __init__(
        self,
        num_scales: int = 3,
        in_channels: int = 3,
        base_channels: int = 32,
        num_downsample: int = 2,
        num_res: int = 4,
        norm: str = "none",
        activation: str = "lrelu",
        pad_type: str = "reflect",
        max_channels: int = 512,
    ) -> None:
        super().__init__(
            num_scales,
            in_channels=in_channels,
            base_channels=base_channels,
            num_downsample=num_downsample,
            num_res=num_res,
            norm=norm,
            activation=activation,
            pad_type=pad_type,
            max_channels=max_channels,
        )

    @staticmethod
    def make_scale(**patch_kwargs: object) -> nn.Module:
        return ResidualPatchDiscriminator(**patch_kwargs)  # type: ignore[arg-type]
