"""Discriminators: patch, multi-scale (MUNIT / DG-Net / segmentation-by-translation) and class-conditional heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from nvresearch.core.gan.blocks import Conv2dBlock, ResBlock, make_activation


class PatchDiscriminator(nn.Module):
    """A fully convolutional real/fake map: ``num_layers`` 4x4 stride-2 convolutions, optional residual blocks, 1x1.

    The first convolution has no normalisation; each next one doubles the width (capped at ``max_channels``).

    Shape:
        x: ``(B, in_channels, H, W)``; returns ``(B, 1, H / 2^num_layers, W / 2^num_layers)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 4,
        norm: str = "none",
        activation: str = "lrelu",
        pad_type: str = "reflect",
        num_res_blocks: int = 0,
        max_channels: int = 1024,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        kw = {"activation": activation, "pad_type": pad_type, "spectral_norm": spectral_norm}
        layers: list[nn.Module] = [Conv2dBlock(in_channels, base_channels, 4, 2, 1, norm="none", **kw)]
        ch = base_channels
        for _ in range(num_layers - 1):
            nxt = min(ch * 2, max_channels)
            layers.append(Conv2dBlock(ch, nxt, 4, 2, 1, norm=norm, **kw))
            ch = nxt
        layers += [ResBlock(ch, norm=norm, **kw) for _ in range(num_res_blocks)]
        out = nn.Conv2d(ch, 1, 1)
        layers.append(_spectral_norm(out) if spectral_norm else out)
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` independent :class:`PatchDiscriminator` applied to the input downsampled by 2 between scales.

    Downsampling is a 3x3 stride-2 average pool that ignores padding (MUNIT's ``MsImageDis``).

    Shape:
        x: ``(B, C, H, W)``; returns a list of ``num_scales`` maps, finest first.
    """

    def __init__(self, num_scales: int = 3, **patch_kwargs: object) -> None:
        super().__init__()
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        self.nets = nn.ModuleList(self.make_scale(**patch_kwargs) for _ in range(num_scales))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    @staticmethod
    def make_scale(**patch_kwargs: object) -> nn.Module:
        """The discriminator of one scale (a subclass changes the per-scale network, not the pyramid)."""
        return PatchDiscriminator(**patch_kwargs)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, net in enumerate(self.nets):
            if i:
                x = self.downsample(x)
            outs.append(net(x))
        return outs


class ClassConditionalHead(nn.Module):
    """Turns a feature map into per-position logits of the given class.

    ``multitask`` (FUNIT): a 1x1 convolution to ``num_classes`` maps, of which the label's map is kept (one binary
    real/fake task per class). ``projection`` (Miyato & Koyama 2018): ``psi(h) + <embed(y), h>`` at every position.

    Args:
        activation: applied to the features first (FUNIT: LeakyReLU 0.2).

    Shape:
        features: ``(B, C, H, W)``; labels: ``(B,)`` integer; returns ``(B, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        mode: str = "multitask",
        activation: str = "lrelu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("multitask", "projection"):
            raise ValueError(f"mode must be 'multitask' or 'projection', got {mode!r}")
        self.mode, self.num_classes = mode, int(num_classes)
        self.activation = make_activation(activation)
        conv = nn.Conv2d(in_channels, num_classes if mode == "multitask" else 1, 1)
        self.conv = _spectral_norm(conv) if spectral_norm else conv
        self.embed = nn.Embedding(num_classes, in_channels) if mode == "projection" else None

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        if labels.shape != (features.shape[0],):
            raise ValueError(f"labels must be (B,) = ({features.shape[0]},), got {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.tolist()}")
        h = self.activation(features)
        out = self.conv(h)
        if self.mode == "multitask":
            return out[torch.arange(out.shape[0], device=out.device), labels]
        assert self.embed is not None
        return out[:, 0] + torch.einsum("bchw,bc->bhw", h, self.embed(labels))
