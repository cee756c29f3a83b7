"""PAC joint upsampling networks (Sec. 5.1, official ``task_jointUpsampling/models.py``) and training-free baselines.

Every model has the same call: ``model(target_lr, guide)`` with the low-resolution target ``(B, C, h, w)`` (min-max
normalised for the learned model, as the reference) and the full-resolution RGB guide ``(B, 3, h*f, w*f)`` in [0, 1]; it
returns ``(B, C, h*f, w*f)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.layers.pac import PacConvTranspose2d

__all__ = [
    "DJIF",
    "DJIF_KERNELS",
    "LITE_WIDTHS",
    "DJIFResidual",
    "Bicubic",
    "Bilinear",
    "JointBilateral",
    "PacJointUpsample",
    "PacJointUpsampleLite",
    "check_factor",
]


def check_factor(factor: int) -> int:
    """Return ``log2(factor)``; raise ``ValueError`` unless ``factor`` is a power of two >= 2."""
    if isinstance(factor, bool) or int(factor) != factor or factor < 2 or (int(factor) & (int(factor) - 1)) != 0:
        raise ValueError(f"factor must be a power of 2 (2, 4, 8, 16, ...), got {factor}")
    return int(math.log2(int(factor)))


def _check_inputs(target_lr: Tensor, guide: Tensor, factor: int, channels: int, guide_channels: int) -> None:
    if target_lr.dim() != 4 or guide.dim() != 4:
        raise ValueError(
            f"expected target_lr (B, C, h, w) and guide (B, 3, H, W), got {tuple(target_lr.shape)} and "
            f"{tuple(guide.shape)}"
        )
    b, c, h, w = target_lr.shape
    if c != channels:
        raise ValueError(f"target_lr has {c} channels, the model was built for {channels}")
    if guide.shape[1] != guide_channels:
        raise ValueError(f"guide has {guide.shape[1]} channels, the model was built for {guide_channels}")
    if guide.shape[0] != b:
        raise ValueError(f"batch sizes differ: target_lr {b}, guide {guide.shape[0]}")
    if tuple(guide.shape[-2:]) != (h * factor, w * factor):
        raise ValueError(
            f"guide size {tuple(guide.shape[-2:])} must be the low-resolution size {(h, w)} times the factor "
            f"{factor} = {(h * factor, w * factor)}; use nvresearch.pac.upsampling.inference.upsample for other sizes"
        )


def _conv_branch(in_channels: int, widths: list[int], kernel_size: int) -> nn.Sequential:
    """Convs with ReLUs in between and none after the last; names ``conv1, relu1, conv2, ...`` as in the reference."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, width in enumerate(widths, start=1):
        layers[f"conv{i}"] = nn.Conv2d(in_channels, width, kernel_size, padding=kernel_size // 2)
        if i < len(widths):
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
        in_channels = width
    return nn.Sequential(layers)


class PacJointUpsample(nn.Module):
    """PAC joint upsampling network (Su et al. 2019, Sec. 5.1; official ``PacJointUpsample``).

    A target branch encodes the low-resolution map; ``log2(factor)`` transposed PAC layers (stride 2, Gaussian kernel,
    unnormalised) each double its resolution, adapting their kernels to guidance features; a final branch maps to the
    output. The guidance branch turns the RGB guide into ``k_ch * log2(factor)`` feature channels at full resolution;
    chunk ``i`` is bilinearly resized to the output size of stage ``i``. There is no batch norm and no skip from a
    bilinear upsampling: the network predicts the normalised high-resolution target directly. A target with ``C``
    channels is processed as ``C`` single-channel samples sharing the guidance.

    Parameter names follow the reference (``branch_t.conv1``, ``up_convts.0``, ...). The transposed weights use
    torch's ``nn.ConvTranspose2d`` convention, so weights from the reference code must be flipped spatially on load
    (:func:`nvresearch.core.layers.pac.official_transposed_weight_to_torch`).

    Args:
        factor: Upsampling factor, a power of two.
        channels: Channels of the target (1 for depth, 2 for flow).
        guide_channels: Channels of the guide image.
        n_t_layers: Convs in the target branch.
        n_g_layers: Convs in the guidance branch.
        n_f_layers: Convs in the final branch.
        n_t_filters: Width of the target branch and of the upsampling layers.
        n_g_filters: Width of the guidance branch.
        n_f_filters: Width of the final branch.
        k_ch: Guidance feature channels per upsampling stage.
        f_sz_1: Kernel size of the plain convs.
        f_sz_2: Kernel size of the transposed PAC layers.
        guide_init_gain: Multiplies the initial weights and bias of the last guidance conv. 1 is the reference
            (torch's default init). With it the features barely vary at init (kernel ~1 everywhere, and the gradient
            of the Gaussian kernel vanishes there), so short runs learn to ignore the guide; about 20, together with
            a ~10x lower learning rate for :meth:`guidance_parameters`, makes the kernels edge-aware from the start
            (a CPU-scale training aid; the architecture and parameter shapes are unchanged).
        zero_guidance: Ablation: multiply the guide by 0, so the kernels are constant and PAC is a plain transposed
            conv (the official ``--zero-guidance`` switch).
        residual: Add the bilinear upsampling of ``target_lr`` to the output, so the network predicts a correction
            of bilinear upsampling (as DJIF does) instead of the whole map. False is the reference (no skip
            from bilinear in the official code). A CPU-scale training aid for short runs (docs/papers/pac.md); no
            parameters are added.
        t_filters: Widths of the target-branch convs (overrides ``n_t_layers`` / ``n_t_filters``).
        g_filters: Widths of the guidance-branch convs before the last (overrides ``n_g_layers`` / ``n_g_filters``).
        f_filters: ``log2(factor)`` widths of the transposed PAC layers, then those of the final convs before the
            last (overrides ``n_f_layers`` / ``n_f_filters``; the Lite networks use it).

    Shape:
        - target_lr: :math:`(B, C, h, w)`, normalised to [0, 1] per sample and channel.
        - guide: :math:`(B, 3, h f, w f)` in [0, 1].
        - output: :math:`(B, C, h f, w f)` in the normalised units of ``target_lr``.
    """

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        guide_channels: int = 3,
        n_t_layers: int = 3,
        n_g_layers: int = 3,
        n_f_layers: int = 2,
        n_t_filters: int = 32,
        n_g_filters: int = 32,
        n_f_filters: int = 32,
        k_ch: int = 16,
        f_sz_1: int = 5,
        f_sz_2: int = 5,
        guide_init_gain: float = 1.0,
        zero_guidance: bool = False,
        residual: bool = False,
        t_filters: Sequence[int] | None = None,
        g_filters: Sequence[int] | None = None,
        f_filters: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.num_ups = check_factor(factor)
        if min(n_t_layers, n_g_layers, n_f_layers) < 1:
            raise ValueError("each branch needs at least one layer")
        t_widths = list(t_filters) if t_filters is not None else [n_t_filters] * n_t_layers
        g_widths = list(g_filters) if g_filters is not None else [n_g_filters] * (n_g_layers - 1)
        if f_filters is not None:
            if len(f_filters) < self.num_ups + 1:
                raise ValueError(f"f_filters needs log2(factor) + 1 = {self.num_ups + 1} widths, got {list(f_filters)}")
            up_widths, f_widths = list(f_filters[: self.num_ups]), list(f_filters[self.num_ups :])
        else:
            up_widths, f_widths = [t_widths[-1]] * self.num_ups, [n_f_filters] * (n_f_layers - 1)
        if f_sz_1 % 2 == 0 or f_sz_2 % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got f_sz_1={f_sz_1}, f_sz_2={f_sz_2}")
        self.factor = int(factor)
        self.channels = channels
        self.guide_channels = guide_channels
        self.k_ch = k_ch
        self.zero_guidance = zero_guidance
        self.residual = bool(residual)
        self.branch_t = _conv_branch(1, t_widths, f_sz_1)
        self.branch_g = _conv_branch(guide_channels, g_widths + [k_ch * self.num_ups], f_sz_1)
        ins = [t_widths[-1]] + up_widths[:-1]
        self.up_convts = nn.ModuleList(
            PacConvTranspose2d(i, o, f_sz_2, stride=2, padding=f_sz_2 // 2, output_padding=1)
            for i, o in zip(ins, up_widths)
        )
        self.branch_f = _conv_branch(up_widths[-1], f_widths + [1], f_sz_1)
        if guide_init_gain != 1.0:
            last = self.branch_g[-1]
            with torch.no_grad():
                last.weight.mul_(guide_init_gain)
                last.bias.mul_(guide_init_gain)

    def guidance_parameters(self) -> list[nn.Parameter]:
        """Parameters of the guidance branch, e.g. for an optimizer parameter group with its own learning rate."""
        return list(self.branch_g.parameters())

    def guidance_features(self, guide: Tensor) -> list[Tensor]:
        """Guidance features of each upsampling stage, resized to that stage's output size, as the reference.

        Shape:
            - guide: :math:`(B, 3, H, W)`.
            - output: ``log2(factor)`` tensors :math:`(B, k_{ch}, H 2^{i+1} / f, W 2^{i+1} / f)`.
        """
        if self.zero_guidance:
            guide = guide * 0
        feats = self.branch_g(guide)
        h, w = guide.shape[-2] // self.factor, guide.shape[-1] // self.factor
        out = []
        for i, chunk in enumerate(feats.split(self.k_ch, dim=1)):
            size = (h * 2 ** (i + 1), w * 2 ** (i + 1))
            if tuple(chunk.shape[-2:]) != size:
                chunk = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False)
            out.append(chunk)
        return out

    def forward(self, target_lr: Tensor, guide: Tensor) -> Tensor:
        _check_inputs(target_lr, guide, self.factor, self.channels, self.guide_channels)
        b, c, h, w = target_lr.shape
        feats = self.guidance_features(guide)
        if c > 1:
            # Fold channels into the batch as the reference: sample b*c + k is channel k of sample b, with b's guidance.
            feats = [f.repeat_interleave(c, dim=0) for f in feats]
        x = self.branch_t(target_lr.reshape(b * c, 1, h, w))
        for up, f in zip(self.up_convts, feats, strict=True):
            x = F.relu(up(x, f))
        x = self.branch_f(x)
        if self.residual:
            size = (h * self.factor, w * self.factor)
            x = x + F.interpolate(target_lr.reshape(b * c, 1, h, w), size=size, mode="bilinear", align_corners=False)
        return x.reshape(b, c, h * self.factor, w * self.factor)


class _Interpolate(nn.Module):
    mode = "bilinear"

    def __init__(self, factor: int) -> None:
        super().__init__()
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.factor = int(factor)

    def forward(self, target_lr: Tensor, guide: Tensor) -> Tensor:
        _check_inputs(target_lr, guide, self.factor, target_lr.shape[1], guide.shape[1])
        h, w = target_lr.shape[-2:]
        return F.interpolate(target_lr, size=(h * self.factor, w * self.factor), mode=self.mode, align_corners=False)


class Bilinear(_Interpolate):
    """Bilinear upsampling baseline, ignoring the guide (``align_corners=False``, as the reference).

    Shape:
        - target_lr: :math:`(B, C, h, w)`; guide: :math:`(B, 3, h f, w f)`; output: :math:`(B, C, h f, w f)`.
    """

    mode = "bilinear"


class Bicubic(_Interpolate):
    """Bicubic upsampling baseline, ignoring the guide (``align_corners=False``).

    Shape:
        - target_lr: :math:`(B, C, h, w)`; guide: :math:`(B, 3, h f, w f)`; output: :math:`(B, C, h f, w f)`.
    """

    mode = "bicubic"


class JointBilateral(nn.Module):
    """Joint bilateral upsampling (Kopf et al. 2007) as a fixed transposed PAC (official ``JointBilateral``).

    A ``normalize_kernel=True`` transposed PAC with identity weights (all taps 1, no mixing across channels) averages
    the low-resolution samples in a ``kernel_size`` window with the weights
    ``exp(-0.5 * ||f_i - f_j||^2)`` on the features ``f = [scale_color * RGB, scale_space * y, scale_space * x]``
    (RGB in [0, 1], coordinates in high-resolution pixels). So the colour bandwidth is ``1 / scale_color`` and the
    spatial one ``1 / scale_space`` pixels. The padding aligns each low-resolution sample with high-resolution pixel
    ``f*i + (f-1)//2``, the ``center`` subsampling offset. No parameters are trained.

    Args:
        factor: Upsampling factor.
        channels: Channels of the target.
        kernel_size: Window size in high-resolution pixels (odd, > factor).
        scale_color: Multiplier of the RGB features.
        scale_space: Multiplier of the pixel coordinates.

    Shape:
        - target_lr: :math:`(B, C, h, w)`; guide: :math:`(B, 3, h f, w f)`; output: :math:`(B, C, h f, w f)`.
    """

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        kernel_size: int = 17,
        scale_color: float = 20.0,
        scale_space: float = 1 / 8,
    ) -> None:
        super().__init__()
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        if kernel_size % 2 == 0 or kernel_size <= factor:
            raise ValueError(f"kernel_size must be odd and larger than the factor {factor}, got {kernel_size}")
        self.factor = int(factor)
        self.channels = channels
        self.scale_color = float(scale_color)
        self.scale_space = float(scale_space)
        self.conv = PacConvTranspose2d(
            channels,
            channels,
            kernel_size,
            stride=factor,
            padding=1 + (kernel_size - factor - 1) // 2,
            output_padding=(kernel_size - factor) % 2,
            bias=False,
            normalize_kernel=True,
        )
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(channels):
                self.conv.weight[c, c] = 1.0
        self.conv.weight.requires_grad_(False)

    def guidance_features(self, guide: Tensor) -> Tensor:
        """``[scale_color * RGB, scale_space * y, scale_space * x]`` at the guide's resolution.

        Shape:
            - guide: :math:`(B, 3, H, W)`; output: :math:`(B, 5, H, W)`.
        """
        b, _, h, w = guide.shape
        ys = torch.arange(h, dtype=guide.dtype, device=guide.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.arange(w, dtype=guide.dtype, device=guide.device).view(1, 1, 1, w).expand(b, 1, h, w)
        return torch.cat([guide * self.scale_color, ys * self.scale_space, xs * self.scale_space], dim=1)

    def forward(self, target_lr: Tensor, guide: Tensor) -> Tensor:
        _check_inputs(target_lr, guide, self.factor, self.channels, guide.shape[1])
        return self.conv(target_lr, self.guidance_features(guide))


LITE_WIDTHS: dict[int, dict[str, object]] = {
    4: {"k_ch": 12, "g_filters": (12, 22), "t_filters": (12, 16, 22), "f_filters": (12, 16, 22)},
    8: {"k_ch": 12, "g_filters": (12, 16), "t_filters": (12, 16, 16), "f_filters": (12, 16, 16, 20)},
    16: {"k_ch": 10, "g_filters": (8, 16), "t_filters": (8, 16, 16), "f_filters": (8, 16, 16, 16, 16)},
}
"""Widths of PacJointUpsampleLite per factor (the official ones): about 56K parameters, like DJIF."""


class PacJointUpsampleLite(PacJointUpsample):
    """The narrow PAC joint upsampling network of the paper's NYU table (official ``PacJointUpsampleLite``).

    :class:`PacJointUpsample` with the per-factor widths of :data:`LITE_WIDTHS`: 55,509 / 56,273 / 55,777 parameters
    at factors 4 / 8 / 16, comparable to DJIF's 56,323. ``f_filters`` lists the widths of the ``log2(factor)``
    transposed PAC layers followed by the width of the final hidden conv.

    Args:
        factor: 4, 8 or 16.
        channels: Channels of the target.
        **kwargs: Other :class:`PacJointUpsample` arguments (e.g. ``guide_init_gain``, ``zero_guidance``).

    Shape:
        - target_lr: :math:`(B, C, h, w)`; guide: :math:`(B, 3, h f, w f)`; output: :math:`(B, C, h f, w f)`.
    """

    def __init__(self, factor: int, channels: int = 1, **kwargs: object) -> None:
        if factor not in LITE_WIDTHS:
            raise ValueError(f"PacJointUpsampleLite is defined for factors {sorted(LITE_WIDTHS)}, got {factor}")
        super().__init__(factor, channels=channels, **LITE_WIDTHS[factor], **kwargs)  # type: ignore[arg-type]


def _djif_branch(in_channels: int, widths: tuple[int, int, int], paddings: tuple[int, int, int]) -> nn.Sequential:
    """conv9x9, ReLU, conv1x1, ReLU, conv5x5 with the given paddings; indices 0-4 are the official state-dict names."""
    layers: list[nn.Module] = []
    for i, (width, k, pad) in enumerate(zip(widths, DJIF_KERNELS, paddings)):
        layers.append(nn.Conv2d(in_channels, width, k, padding=pad))
        if i < 2:
            layers.append(nn.ReLU())
        in_channels = width
    return nn.Sequential(*layers)


DJIF_KERNELS = (9, 1, 5)
"""Filter sizes of the three convs of each DJIF branch (official ``DJIF``)."""


class DJIF(nn.Module):
    """Deep joint image filtering (Li et al., ECCV 2016) as the PAC paper reimplements it (official ``DJIF``).

    The low-resolution target is bilinearly upsampled to the guide's size. A target branch and a guidance branch
    (each conv9x9 -> 96, ReLU, conv1x1 -> 48, ReLU, conv5x5 -> 1) feed a joint branch on their concatenation
    (conv9x9 -> 64, ReLU, conv1x1 -> 32, ReLU, conv5x5 -> 1): 56,323 parameters. The joint output is the prediction;
    there is no residual from the bilinear upsampling (official ``task_jointUpsampling/models.py`` ``DJIF``).

    Padding follows the official code: the joint branch pads each conv by ``k // 2`` ("same": 4, 0, 2), while the
    target and guidance branches spread the same total of 6 pixels evenly over their three convs (2, 2, 2): the 9x9
    conv shrinks the map by 2 pixels per side and the 1x1 conv, on zero padding, grows it back, so a branch keeps
    the input's size but its values near the border differ from "same" padding (by several percent with identical
    weights). ``same_padding=True`` pads every conv by ``k // 2`` instead (our earlier layout).

    State-dict names are the official ones (``branch_t.0``, ``branch_t.2``, ``branch_t.4``, ``branch_g.*``,
    ``branch_joint.*``), so the released ``x{4,8,16}_djif_weights_epoch_5000.pth`` files load with
    ``load_state_dict`` (see :func:`nvresearch.pac.load_official`). A target with ``C`` channels is processed as
    ``C`` single-channel samples sharing the guidance, as in the reference (which builds every joint-upsampling
    model with one channel, also for flow).

    Args:
        factor: Upsampling factor.
        channels: Channels of the target.
        guide_channels: Channels of the guide.
        residual: Add the bilinear upsampling to the output (the DJIF paper's residual learning; not in the PAC
            reference). :class:`DJIFResidual` sets it.
        same_padding: Pad every conv by ``k // 2`` instead of the official branch paddings.

    Shape:
        - target_lr: :math:`(B, C, h, w)` normalised to [0, 1]; guide: :math:`(B, 3, h f, w f)` in [0, 1].
        - output: :math:`(B, C, h f, w f)`.
    """

    def __init__(
        self,
        factor: int,
        channels: int = 1,
        guide_channels: int = 3,
        residual: bool = False,
        same_padding: bool = False,
    ) -> None:
        super().__init__()
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.factor = int(factor)
        self.channels = channels
        self.guide_channels = guide_channels
        self.residual = bool(residual)
        self.same_padding = bool(same_padding)
        same = tuple(k // 2 for k in DJIF_KERNELS)
        total = sum(same)
        # Official layout: the target and guidance branches spread the joint branch's total padding evenly.
        spread = (total // 3, total // 3, total - 2 * (total // 3))
        tg = same if same_padding else spread
        self.branch_t = _djif_branch(1, (96, 48, 1), tg)  # type: ignore[arg-type]
        self.branch_g = _djif_branch(guide_channels, (96, 48, 1), tg)  # type: ignore[arg-type]
        self.branch_joint = _djif_branch(2, (64, 32, 1), same)  # type: ignore[arg-type]

    def forward(self, target_lr: Tensor, guide: Tensor) -> Tensor:
        _check_inputs(target_lr, guide, self.factor, self.channels, self.guide_channels)
        b, c, h, w = target_lr.shape
        size = (h * self.factor, w * self.factor)
        up = F.interpolate(target_lr.reshape(b * c, 1, h, w), size=size, mode="bilinear", align_corners=False)
        g = self.branch_g(guide)
        if c > 1:
            g = g.repeat_interleave(c, dim=0)
        out = self.branch_joint(torch.cat([self.branch_t(up), g], dim=1))
        if self.residual:
            out = out + up
        return out.reshape(b, c, *size)


class DJIFResidual(DJIF):
    """DJIF predicting a correction of the bilinear upsampling, with "same" padding everywhere (not the reference).

    The residual learning of the DJIF paper, which the PAC reference's reimplementation does not use. Short CPU runs
    train it faster than :class:`DJIF` (it starts at the bilinear upsampling); the same parameters and names as
    :class:`DJIF`.

    Args:
        factor: Upsampling factor.
        channels: Channels of the target.
        guide_channels: Channels of the guide.

    Shape:
        - target_lr: :math:`(B, C, h, w)`; guide: :math:`(B, 3, h f, w f)`; output: :math:`(B, C, h f, w f)`.
    """

    def __init__(self, factor: int, channels: int = 1, guide_channels: int = 3) -> None:
        super().__init__(factor, channels=channels, guide_channels=guide_channels, residual=True, same_padding=True)
