"""Hot-swapping ``nn.Conv2d`` layers of an existing (pretrained) network for pixel-adaptive convolutions.

Su et al. (CVPR 2019, Sec. 5.3, "PAC-FCN") replace convolutions of a pretrained FCN-8s by PAC layers with the same
weights, guided by the network's own conv2_2 features scaled by 1e-4: the Gaussian kernel is then ~1 everywhere, so
the swapped network starts from the pretrained function and learns to use the guidance during fine-tuning.

Example::

    net = torchvision.models.vgg16().features
    guide = swap_conv_for_pac(net, ["28"])          # conv5_3
    with guide(features):                           # (B, F, h, w), resized to each layer's input size
        out = net(image)
    out = net(image)                                # no guidance: exactly the original convolutions
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nvresearch.core.layers.pac.modules import PacConv2d

__all__ = ["PacGuidance", "SwappedPacConv2d", "pac_from_conv", "swap_conv_for_pac"]


class PacGuidance:
    """The guidance that the layers of one :func:`swap_conv_for_pac` call read during a forward pass.

    Calling it returns a context manager that sets the guidance for the duration of the block (nesting restores the
    outer value); :attr:`value` is ``None`` outside, and the swapped layers then compute their original convolution.
    """

    def __init__(self) -> None:
        self.value: Tensor | None = None

    @contextmanager
    def __call__(self, guidance: Tensor) -> Iterator[None]:
        if not isinstance(guidance, Tensor) or guidance.dim() != 4:
            shape = tuple(guidance.shape) if isinstance(guidance, Tensor) else type(guidance).__name__
            raise ValueError(f"guidance must be a (B, F, H, W) tensor, got {shape}")
        previous, self.value = self.value, guidance
        try:
            yield
        finally:
            self.value = previous


class SwappedPacConv2d(PacConv2d):
    """A :class:`PacConv2d` that takes its guidance from a shared :class:`PacGuidance` when none is passed.

    The guidance is resized bilinearly to the layer's input size and multiplied by ``guidance_scale`` (1e-4 in the
    paper, so that ``K ~ 1`` at the start). Without any guidance the layer is exactly the original convolution.
    Parameter names are those of ``nn.Conv2d`` (``weight``, ``bias``), so pretrained state dicts still load.
    """

    def __init__(self, *args: object, guidance: PacGuidance, guidance_scale: float = 1e-4, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.guidance = guidance
        self.guidance_scale = float(guidance_scale)

    def forward(
        self,
        input_2d: Tensor,
        input_for_kernel: Tensor | None = None,
        kernel: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        if input_for_kernel is None and kernel is None:
            source = self.guidance.value
            if source is None:
                return F.conv2d(input_2d, self.weight, self.bias, self.stride, self.padding, self.dilation)
            if source.shape[-2:] != input_2d.shape[-2:]:
                source = F.interpolate(source, size=input_2d.shape[-2:], mode="bilinear", align_corners=False)
            input_for_kernel = source.to(input_2d.dtype) * self.guidance_scale
        return super().forward(input_2d, input_for_kernel, kernel, mask)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, guidance_scale={self.guidance_scale:g}"


def pac_from_conv(
    conv: nn.Conv2d,
    kernel_type: str = "gaussian",
    smooth_kernel_type: str = "none",
    normalize_kernel: bool = False,
    guidance: PacGuidance | None = None,
    guidance_scale: float = 1e-4,
) -> SwappedPacConv2d:
    """A PAC layer with ``conv``'s geometry, weight and bias (copied; same device and dtype).

    Raises:
        TypeError: ``conv`` is not an ``nn.Conv2d``.
        ValueError: grouped convolutions, even kernels, string or non-zero padding modes (PAC has none of these).
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"grouped convolutions (groups={conv.groups}) have no PAC counterpart")
    if any(k % 2 == 0 for k in conv.kernel_size):
        raise ValueError(f"PAC needs an odd kernel size, got {conv.kernel_size}")
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise ValueError(
            f"PAC pads with zeros by an explicit amount; got padding={conv.padding!r}, "
            f"padding_mode={conv.padding_mode!r}"
        )
    pac = SwappedPacConv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        kernel_type=kernel_type,
        smooth_kernel_type=smooth_kernel_type,
        normalize_kernel=normalize_kernel,
        guidance=guidance if guidance is not None else PacGuidance(),
        guidance_scale=guidance_scale,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        pac.weight.copy_(conv.weight)
        if conv.bias is not None:
            pac.bias.copy_(conv.bias)
    pac.train(conv.training)
    return pac


def swap_conv_for_pac(
    model: nn.Module,
    names: Iterable[str],
    kernel_type: str = "gaussian",
    smooth_kernel_type: str = "none",
    normalize_kernel: bool = False,
    guidance_scale: float = 1e-4,
) -> PacGuidance:
    """Replaces the named ``nn.Conv2d`` submodules of ``model`` (in place) by PAC layers with the same weights.

    Args:
        model: Any module; ``names`` are its ``named_modules()`` names (e.g. ``"features.28"``).
        names: Convolutions to replace.
        kernel_type, smooth_kernel_type, normalize_kernel: PAC options (see :class:`PacConv2d`).
        guidance_scale: Multiplies the guidance (the paper's 1e-4 keeps ``K ~ 1`` at the start).

    Returns:
        The :class:`PacGuidance` shared by the new layers: ``with guidance(features): model(x)``.

    Raises:
        KeyError: a name is not a submodule of ``model``.
        TypeError / ValueError: see :func:`pac_from_conv`.
    """
    names = list(names)
    if not names:
        raise ValueError("names is empty: give the names of the nn.Conv2d layers to replace")
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules or n == ""]
    if missing:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        raise KeyError(f"no submodule named {missing} in {type(model).__name__}; its nn.Conv2d layers are {convs}")
    guidance = PacGuidance()
    for name in names:
        pac = pac_from_conv(
            modules[name],  # type: ignore[arg-type]
            kernel_type=kernel_type,
            smooth_kernel_type=smooth_kernel_type,
            normalize_kernel=normalize_kernel,
            guidance=guidance,
            guidance_scale=guidance_scale,
        )
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, pac)
    return guidance
