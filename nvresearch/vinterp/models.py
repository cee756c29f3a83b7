"""SuperSloMo networks (Jiang et al., CVPR 2018) as used by the cycle-consistency paper (Reda et al., ICCV 2019).

Two U-Nets of one topology: the flow-computation U-Net predicts the bidirectional flows ``F_{0->1}`` and
``F_{1->0}`` between the inputs; the arbitrary-time flow-interpolation U-Net refines the linearly approximated
intermediate flows and predicts one visibility map. At the reference configuration
(``configs/model/vinterp/default.yaml``: base width 32) :class:`SuperSloMo` has 38,846,249 trainable parameters:
18,235,620 in :class:`FlowComputation`, 20,610,629 in :class:`FlowInterpolation` (official ``models/HJSuperSloMo.py``);
the frozen VGG16 features of the perceptual loss (:class:`PerceptualFeatures`) add 7,635,264.

Units: frames are RGB in ``[0, 255]``; the networks work on frames minus a fixed mean pixel (``mean_pixel``), and
every pixel loss is computed in that mean-subtracted 0-255 scale, as the official code. Flows are in pixels, channel 0
horizontal. Time ``t`` in ``[0, 1]`` is per sample; the reference takes it from ``linspace(0, 1, N + 2)[k]``
(:func:`time_from_index`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.geometry.warp import backward_warp

__all__ = [
    "MEAN_PIXEL",
    "CycleOutput",
    "FlowComputation",
    "FlowInterpolation",
    "Interpolation",
    "PerceptualFeatures",
    "SuperSloMo",
    "UNet",
    "cycle_times",
    "time_from_index",
]

MEAN_PIXEL: tuple[float, float, float] = (109.93, 109.167, 101.455)
"""RGB mean pixel subtracted from the 0-255 frames (official ``HJSuperSloMo.py``)."""

# Kernel sizes of the five encoder levels (7x7, 5x5, then 3x3; official ``HJSuperSloMo.py``).
_KERNELS = (7, 5, 3, 3, 3)


def _double_conv(cin: int, cout: int, kernel: int, slope: float) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
        nn.LeakyReLU(slope, inplace=True),
        nn.Conv2d(cout, cout, kernel, padding=kernel // 2),
        nn.LeakyReLU(slope, inplace=True),
    ]


class UNet(nn.Module):
    """The SuperSloMo U-Net body (official ``HJSuperSloMo.py``): 5 encoder levels with 2x2 average pooling, a
    bottleneck, 5 bilinear decoder levels with skip connections (skip first in the concatenation), and a 3x3 refinement
    conv.

    Args:
        in_channels: input channels (6 for the flow U-Net, 16 for the interpolation U-Net).
        base_channels: width of the first level; level l has ``base_channels * 2^(l-1)`` (reference: 32 -> 512).
        extra_bottleneck_channels: channels of a tensor concatenated *before* the bottleneck output, at the first
            decoder's input (the interpolation U-Net receives the flow U-Net's bottleneck this way; reference 512).
        negative_slope: LeakyReLU slope (0.1).

    Shape:
        x: ``(B, in_channels, H, W)`` with H, W multiples of 32; extra: ``(B, extra_bottleneck_channels, H/32, W/32)``.
        Returns ``(features (B, base_channels, H, W), bottleneck (B, 16 * base_channels, H/32, W/32))``.
    """

    def __init__(
        self,
        in_channels: int,
        base_channels: int = 32,
        extra_bottleneck_channels: int = 0,
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(5)]
        self.encoders = nn.ModuleList()
        cin = in_channels
        for width, kernel in zip(widths, _KERNELS, strict=True):
            self.encoders.append(nn.Sequential(*_double_conv(cin, width, kernel, negative_slope)))
            cin = width
        self.bottleneck = nn.Sequential(*_double_conv(widths[4], widths[4], 3, negative_slope))
        # Decoders in the order they run (deepest first): inputs are the previous decoder output and its skip.
        self.decoders = nn.ModuleList()
        cin = widths[4] + extra_bottleneck_channels
        for width in reversed(widths):
            up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.decoders.append(nn.Sequential(up, *_double_conv(cin, width, 3, negative_slope)))
            cin = 2 * width
        self.refine = nn.Sequential(nn.Conv2d(2 * widths[0], widths[0], 3, padding=1), nn.LeakyReLU(negative_slope))
        self.extra_bottleneck_channels = extra_bottleneck_channels
        self.out_channels = widths[0]

    def forward(self, x: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2, stride=2)
        bottleneck = self.bottleneck(x)
        x = bottleneck
        if self.extra_bottleneck_channels:
            if extra is None:
                raise ValueError(f"this U-Net needs an extra bottleneck input of {self.extra_bottleneck_channels} ch")
            x = torch.cat((extra, x), dim=1)
        for decoder, skip in zip(self.decoders, reversed(skips), strict=True):
            x = torch.cat((skip, decoder(x)), dim=1)
        return self.refine(x), bottleneck


class FlowComputation(nn.Module):
    """Flow-computation U-Net (``flow_pred_*``): ``[I0 - m ; I1 - m]`` -> ``F_{0->1}``, ``F_{1->0}`` and its bottleneck.

    Shape:
        x: ``(B, 6, H, W)``; returns ``(flow_01 (B, 2, H, W), flow_10 (B, 2, H, W), bottleneck (B, 16 b, H/32, W/32))``
        where b is ``base_channels``.
    """

    def __init__(self, base_channels: int = 32, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.unet = UNet(6, base_channels, 0, negative_slope)
        self.flow_01 = nn.Conv2d(base_channels, 2, 1)  # official "forward_flow_conv" (uvf)
        self.flow_10 = nn.Conv2d(base_channels, 2, 1)  # official "backward_flow_conv" (uvb)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features, bottleneck = self.unet(x)
        return self.flow_01(features), self.flow_10(features), bottleneck


class FlowInterpolation(nn.Module):
    """Arbitrary-time flow-interpolation U-Net (official ``flow_interp_*``): residuals of ``F_{t->0}``, ``F_{t->1}`` and
    the visibility of I0 at t.

    The input is ``[I0, I1, W(I0, F^_{t->0}), F^_{t->0}, W(I1, F^_{t->1}), F^_{t->1}]`` (16 channels, images
    mean-subtracted); the flow U-Net's bottleneck joins at the first decoder.

    Shape:
        x: ``(B, 16, H, W)``; flow_bottleneck: ``(B, 16 b, H/32, W/32)``; returns
        ``(delta_t0 (B, 2, H, W), delta_t1 (B, 2, H, W), visibility0 (B, 1, H, W) in (0, 1))``.
    """

    def __init__(self, base_channels: int = 32, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.unet = UNet(16, base_channels, 16 * base_channels, negative_slope)
        # Official names: the t->0 residual is "flow_interp_backward_out_layer", t->1 "..._forward_out_layer".
        self.delta_t0 = nn.Conv2d(base_channels, 2, 1)
        self.delta_t1 = nn.Conv2d(base_channels, 2, 1)
        self.visibility = nn.Conv2d(base_channels, 1, 1)

    def forward(self, x: Tensor, flow_bottleneck: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features, _ = self.unet(x, flow_bottleneck)
        return self.delta_t0(features), self.delta_t1(features), torch.sigmoid(self.visibility(features))


class Interpolation(NamedTuple):
    """One interpolation at time t; images mean-subtracted, flows in pixels.

    Attributes:
        frame: ``I_t``. flow_01 / flow_10: the bidirectional input flows. flow_t0_raw / flow_t1_raw:
        the approximated intermediate flows. warped0_raw / warped1_raw: ``W(I0, F^_{t->0})``,
        ``W(I1, F^_{t->1})``. flow_t0 / flow_t1: the refined flows. visibility0: ``V_{t<-0}``.
    """

    frame: Tensor
    flow_01: Tensor
    flow_10: Tensor
    flow_t0_raw: Tensor
    flow_t1_raw: Tensor
    warped0_raw: Tensor
    warped1_raw: Tensor
    flow_t0: Tensor
    flow_t1: Tensor
    visibility0: Tensor


class CycleOutput(NamedTuple):
    """The three interpolations of the cycle-consistency construct (``CycleHJSuperSloMo``); images mean-subtracted.

    Attributes:
        first: ``M(I0, I1, t)`` (its ``frame`` is ``I^_t``). second: ``M(I1, I2, t)`` (``I^_{1+t}``).
        cycle: ``M(I^_t, I^_{1+t}, 1 - t)``, whose ``frame`` reconstructs I1.
    """

    first: Interpolation
    second: Interpolation
    cycle: Interpolation


def time_from_index(index: Tensor | int, num_interp: int) -> Tensor:
    """``t = linspace(0, 1, N + 2)[k]``: the reference's time of intermediate frame k of N (official ``tlinespace``).

    Shape:
        index: ``(B,)`` integers in ``1..N`` (or one int); returns float32 ``(B,)`` (or a scalar tensor).
    """
    index = torch.as_tensor(index, dtype=torch.long)
    if torch.any(index < 0) or torch.any(index > num_interp + 1):
        raise ValueError(f"frame index must lie in 0..{num_interp + 1} for num_interp={num_interp}, got {index}")
    return torch.linspace(0, 1, num_interp + 2, dtype=torch.float32)[index]


def cycle_times(index: Tensor | int, num_interp: int) -> tuple[Tensor, Tensor]:
    """Times of the two cycle passes: ``t`` of index k and ``t'`` of index ``N + 1 - k`` (official second pass).

    Shape:
        index: ``(B,)``; returns two float32 ``(B,)`` tensors.
    """
    index = torch.as_tensor(index, dtype=torch.long)
    return time_from_index(index, num_interp), time_from_index(num_interp + 1 - index, num_interp)


class SuperSloMo(nn.Module):
    """SuperSloMo frame interpolation at arbitrary time t (official ``HJSuperSloMo.py``), with the cycle construct of
    ``CycleHJSuperSloMo.py``.

    Args:
        base_channels: U-Net base width (reference 32 = 38,846,249 parameters; 4 or 8 for CPU tests).
        flow_scale: the flow U-Net runs on the inputs downsampled by this factor; its flows are upsampled and
            multiplied by it, its bottleneck upsampled only (official README: 2 for SlowFlow/Sintel, 1 for UCF101).
            H and W must be multiples of ``32 * flow_scale``.
        align_corners: the warping convention (:func:`~nvresearch.core.geometry.warp.backward_warp`; True is the
            exact pixel warp the released models were trained with, under torch <= 1.2).
        negative_slope: LeakyReLU slope.
        mean_pixel: RGB mean subtracted from 0-255 frames.

    Shape:
        frame0, frame1: ``(B, 3, H, W)`` in 0-255; t: ``(B,)`` or a float in [0, 1]; :meth:`forward` returns the
        ``(B, 3, H, W)`` intermediate frame in 0-255 (not clamped).
    """

    def __init__(
        self,
        base_channels: int = 32,
        flow_scale: float = 1.0,
        align_corners: bool = True,
        negative_slope: float = 0.1,
        mean_pixel: tuple[float, float, float] = MEAN_PIXEL,
    ) -> None:
        super().__init__()
        if flow_scale <= 0:
            raise ValueError(f"flow_scale must be positive, got {flow_scale}")
        self.flow_net = FlowComputation(base_channels, negative_slope)
        self.interp_net = FlowInterpolation(base_channels, negative_slope)
        self.flow_scale = float(flow_scale)
        self.align_corners = bool(align_corners)
        self.register_buffer("mean_pixel", torch.tensor(mean_pixel, dtype=torch.float32).view(1, 3, 1, 1), False)

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (5 poolings of the ``1 / flow_scale`` downsampled input)."""
        return int(round(32 * self.flow_scale))

    def warp(self, image: Tensor, flow: Tensor) -> Tensor:
        """Backward warp in this model's convention. Shape: image ``(B, C, H, W)``, flow ``(B, 2, H, W)``."""
        return backward_warp(image, flow, self.align_corners)

    def _check(self, a: Tensor, b: Tensor) -> None:
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(
                f"SuperSloMo needs two (B, 3, H, W) frames of one shape, got {tuple(a.shape)}, {tuple(b.shape)}"
            )
        m = self.size_multiple
        if a.shape[-2] % m or a.shape[-1] % m:
            raise ValueError(
                f"frame size {tuple(a.shape[-2:])} is not a multiple of {m} (32 * flow_scale "
                f"{self.flow_scale:g}); pad or crop the frames"
            )

    def bidirectional_flow(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``F_{0->1}``, ``F_{1->0}`` and the bottleneck at full resolution (the official multi-scale flow).

        Shape:
            a, b: mean-subtracted ``(B, 3, H, W)``; returns ``(B, 2, H, W)`` twice and ``(B, 16 b, H/32, W/32)``.
        """
        s = self.flow_scale
        if s != 1.0:
            a = F.interpolate(a, scale_factor=1.0 / s, mode="bilinear", align_corners=False)
            b = F.interpolate(b, scale_factor=1.0 / s, mode="bilinear", align_corners=False)
        flow_01, flow_10, bottleneck = self.flow_net(torch.cat((a, b), dim=1))
        if s != 1.0:
            # flows are displacements in pixels: rescale them with the image; the bottleneck is only resized.
            flow_01 = s * F.interpolate(flow_01, scale_factor=s, mode="bilinear", align_corners=False)
            flow_10 = s * F.interpolate(flow_10, scale_factor=s, mode="bilinear", align_corners=False)
            bottleneck = F.interpolate(bottleneck, scale_factor=s, mode="bilinear", align_corners=False)
        return flow_01, flow_10, bottleneck

    def interpolate_centered(self, a: Tensor, b: Tensor, t: Tensor | float) -> Interpolation:
        """``M(a, b, t)`` on mean-subtracted frames, with every intermediate the losses need.

        Shape:
            a, b: ``(B, 3, H, W)`` mean-subtracted; t: ``(B,)`` or a float.
        """
        self._check(a, b)
        t = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(-1, 1, 1, 1)
        flow_01, flow_10, bottleneck = self.bidirectional_flow(a, b)
        # Linear-motion approximation of the intermediate flows (SuperSloMo).
        flow_t0_raw = -(1 - t) * t * flow_01 + t * t * flow_10
        flow_t1_raw = (1 - t) * (1 - t) * flow_01 - (1 - t) * t * flow_10
        warped0_raw = self.warp(a, flow_t0_raw)
        warped1_raw = self.warp(b, flow_t1_raw)
        x = torch.cat((a, b, warped0_raw, flow_t0_raw, warped1_raw, flow_t1_raw), dim=1)
        delta_t0, delta_t1, visibility0 = self.interp_net(x, bottleneck)
        flow_t0 = flow_t0_raw + delta_t0
        flow_t1 = flow_t1_raw + delta_t1
        warped0 = self.warp(a, flow_t0)
        warped1 = self.warp(b, flow_t1)
        # Visibility-weighted blend; V1 = 1 - V0. The 1e-10 is the reference's.
        alpha0 = (1 - t) * visibility0
        alpha1 = t * (1 - visibility0)
        frame = (alpha0 * warped0 + alpha1 * warped1) / (alpha0 + alpha1 + 1e-10)
        return Interpolation(
            frame, flow_01, flow_10, flow_t0_raw, flow_t1_raw, warped0_raw, warped1_raw, flow_t0, flow_t1, visibility0
        )

    def forward(self, frame0: Tensor, frame1: Tensor, t: Tensor | float) -> Tensor:
        m = self.mean_pixel
        return self.interpolate_centered(frame0 - m, frame1 - m, t).frame + m

    def cycle(
        self, a: Tensor, b: Tensor, c: Tensor, t: Tensor | float, t_back: Tensor | float | None = None
    ) -> CycleOutput:
        """The cycle construct (official ``CycleHJSuperSloMo.forward``): ``I^_t = M(a, b, t)``,
        ``I^_{1+t} = M(b, c, t)``, then ``M(I^_t, I^_{1+t}, t_back)`` reconstructs b.

        Args:
            a, b, c: three consecutive low-frame-rate frames, mean-subtracted.
            t: time of the first pass; t_back: of the second (default ``1 - t``; the reference takes
                ``linspace(0, 1, N + 2)[N + 1 - k]``, :func:`cycle_times`).

        Shape:
            a, b, c: ``(B, 3, H, W)``; t, t_back: ``(B,)`` or floats.
        """
        if t_back is None:
            t_back = 1 - torch.as_tensor(t, dtype=a.dtype, device=a.device)
        first = self.interpolate_centered(a, b, t)
        second = self.interpolate_centered(b, c, t)
        return CycleOutput(first, second, self.interpolate_centered(first.frame, second.frame, t_back))


def _vgg16_features_22() -> nn.Sequential:
    """torchvision's ``vgg16().features[:22]`` with the same module indices (so its state-dict names load), built
    here because importing ``torchvision.models`` costs seconds."""
    layers: list[nn.Module] = []
    cin = 3
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512):
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(item)
    return nn.Sequential(*layers[:22])


class PerceptualFeatures(nn.Module):
    """Frozen VGG16 ``features[:22]`` (conv1_1 ... conv4_3, before its ReLU) of the perceptual loss (official).

    The input is ``(I - m) / 255`` in RGB, without ImageNet normalisation, as in the reference. ImageNet weights come
    from a local file (no download): a torchvision ``vgg16`` state dict (``features.N.weight`` ...) or one of the
    22-layer features (``N.weight`` ...). Without a file the weights are random, which is *not* equivalent.

    Args:
        weights_path: the state-dict file, or None for random weights.

    Shape:
        x: ``(B, 3, H, W)``; returns ``(B, 512, H/8, W/8)``.
    """

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        self.features = _vgg16_features_22()
        if weights_path:
            path = Path(os.path.expanduser(weights_path))
            if not path.is_file():
                raise FileNotFoundError(f"no VGG16 weights file at '{path}' (a torchvision vgg16 state dict)")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
            missing, unexpected = self.features.load_state_dict(state, strict=False)
            if missing or [k for k in unexpected if int(k.split(".")[0]) < 22]:
                raise ValueError(f"'{path}' is not a VGG16 state dict: missing {missing[:4]}")
        self.features.requires_grad_(False)
        self.features.eval()
        self.weights_path = weights_path

    def train(self, mode: bool = True) -> PerceptualFeatures:
        super().train(mode)
        self.features.eval()  # frozen: no dropout/batch-norm state to switch, but keep the flag honest
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
