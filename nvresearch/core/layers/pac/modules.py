"""The PAC modules: :class:`PacConv2d`, :class:`PacConvTranspose2d`, :class:`PacPool2d` (configuration, parameters,
fillers, kernel computation); each ``forward`` is one call to
:func:`~nvresearch.core.layers.pac.functional.pac_layer`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nvresearch.core.layers.pac.checks import (
    _CONV_FILLERS,
    _TRANSPOSED_FILLERS,
    IntPair,
    _check_geometry,
    _check_output_padding,
    _conv_transpose_out,
    _default_smooth_kernel,
    _pair,
    _parse_kernel_type,
    _parse_smooth_kernel_type,
)
from nvresearch.core.layers.pac.functional import pac_layer
from nvresearch.core.layers.pac.kernel import packernel2d

__all__ = ["PacConv2d", "PacConvTranspose2d", "PacPool2d"]


def _crf_gaussian(k: int) -> Tensor:
    """Truncated k×k Gaussian (sigma = k/4), normalised to sum k^2, with the centre tap zeroed (DenseCRF: j != i)."""
    r = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g1 = torch.exp(-(r * r) / (2 * (k / 4) ** 2))
    g = torch.outer(g1, g1)
    g = g / g.sum() * (k * k)
    g[k // 2, k // 2] = 0
    return g


def _linear_profile(k: int, s: int, normalize: bool) -> Tensor:
    """1-D bilinear-upsampling filter for stride ``s`` centred in ``k`` taps."""
    pad = (k - (2 * s - 1)) // 2
    taps = [0.0] * pad + [float(i) for i in range(1, s)] + [float(i) for i in range(s, 0, -1)] + [0.0] * pad
    profile = torch.tensor(taps, dtype=torch.float64) / s
    if normalize:  # undo the per-location normalisation over real samples, tap j sees this many of them
        profile = profile * torch.tensor([((k - j - 1) // s) + (j // s) + 1.0 for j in range(k)], dtype=torch.float64)
    return profile


class _PacConvNd(nn.Module):
    """Shared configuration, parameters and kernel computation of the PAC layers (a pool subclass sets
    ``pool_only=True`` to skip ``weight``/``bias``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair,
        padding: IntPair,
        dilation: IntPair,
        transposed: bool,
        output_padding: IntPair,
        bias: bool,
        pool_only: bool,
        kernel_type: str,
        smooth_kernel_type: str,
        channel_wise: bool,
        normalize_kernel: bool,
        shared_filters: bool,
        filler: str | None,
        native_impl: bool,
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.output_padding = _pair(output_padding, "output_padding")
        _check_geometry(self.kernel_size, self.stride, self.padding, self.dilation)
        if transposed:
            _check_output_padding(self.output_padding, self.stride, self.dilation)
        if not pool_only:
            for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be a positive int, got {value!r}")
            if shared_filters and in_channels != out_channels:
                raise ValueError(
                    f"shared_filters=True requires in_channels == out_channels, got "
                    f"in_channels={in_channels}, out_channels={out_channels}"
                )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.transposed = transposed
        self.pool_only = pool_only
        self.kernel_type = kernel_type
        self.smooth_kernel_type = smooth_kernel_type
        self.channel_wise = channel_wise
        self.normalize_kernel = normalize_kernel
        self.shared_filters = shared_filters
        self.filler = filler
        self.native_impl = native_impl
        self._spec = _parse_kernel_type(kernel_type)
        self._smooth = _parse_smooth_kernel_type(smooth_kernel_type)
        smooth_kind, smooth_size = self._smooth

        self.weight: Tensor | None
        self.bias: Tensor | None
        if not pool_only:
            valid = _TRANSPOSED_FILLERS if transposed else _CONV_FILLERS
            if filler not in valid:
                raise ValueError(f"invalid filler {filler!r} for {type(self).__name__}; valid fillers are {valid}")
            kh, kw = self.kernel_size
            if filler in ("pool", "crf_pool"):
                if not shared_filters:
                    raise ValueError(f"filler={filler!r} requires shared_filters=True")
                self.register_buffer("weight", torch.ones(1, 1, kh, kw))
            elif shared_filters:
                self.weight = nn.Parameter(torch.empty(1, 1, kh, kw))
            elif transposed:
                self.weight = nn.Parameter(torch.empty(in_channels, out_channels, kh, kw))
            else:
                self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
            if filler in ("crf", "crf_perturbed", "crf_pool") and (kh != kw or in_channels != out_channels):
                raise ValueError(
                    f"filler={filler!r} requires a square kernel and in_channels == out_channels, got "
                    f"kernel_size={self.kernel_size}, in_channels={in_channels}, out_channels={out_channels}"
                )
            if filler == "linear":
                if in_channels != out_channels:
                    raise ValueError(
                        f"filler='linear' requires in_channels == out_channels, got {in_channels} and {out_channels}"
                    )
                if any(k < 2 * s - 1 for k, s in zip(self.kernel_size, self.stride)):
                    raise ValueError(
                        f"filler='linear' requires kernel_size >= 2 * stride - 1, got "
                        f"kernel_size={self.kernel_size}, stride={self.stride}"
                    )
            self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        else:
            self.weight = None
            self.bias = None

        if self._spec.family == "inv":
            n = out_channels if channel_wise and not self._spec.fixed else None
            if n is not None and n < 1:
                raise ValueError(f"out_channels is needed for a channel_wise, learnable {kernel_type!r} kernel")
            alpha = torch.full((n,), self._spec.alpha) if n else torch.tensor(self._spec.alpha)
            lam = torch.full((n,), self._spec.lam) if n else torch.tensor(self._spec.lam)
            if self._spec.fixed:
                self.register_buffer("inv_alpha", alpha)
                self.register_buffer("inv_lambda", lam)
            else:
                self.inv_alpha = nn.Parameter(alpha)
                self.inv_lambda = nn.Parameter(lam)
        if smooth_kind == "full":
            self.smooth_kernel = nn.Parameter(_default_smooth_kernel(smooth_kind, smooth_size))
        elif smooth_kind != "none":
            self.register_buffer("smooth_kernel", _default_smooth_kernel(smooth_kind, smooth_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-initialises ``weight``/``bias`` with the filler and the kernel parameters with their initial values."""
        if not self.pool_only and self.weight is not None:
            kh, kw = self.kernel_size
            if self.filler == "uniform":
                bound = 1.0 / math.sqrt(self.in_channels * kh * kw)
                if self.shared_filters:
                    bound *= self.in_channels
                self.weight.uniform_(-bound, bound)
                if self.bias is not None:
                    self.bias.uniform_(-bound, bound)
            elif self.filler == "linear":
                profile = torch.outer(
                    _linear_profile(kh, self.stride[0], self.normalize_kernel),
                    _linear_profile(kw, self.stride[1], self.normalize_kernel),
                )
                self.weight.zero_()
                for ch in range(1 if self.shared_filters else self.in_channels):
                    self.weight[ch, ch] = profile.to(self.weight.dtype)
            elif self.filler in ("crf", "crf_perturbed"):
                g = _crf_gaussian(kh).to(self.weight.dtype)
                if self.shared_filters:
                    self.weight.copy_(g.view(1, 1, kh, kw))
                else:
                    potts = 1.0 - torch.eye(self.in_channels, dtype=self.weight.dtype)
                    self.weight.copy_(potts.view(self.in_channels, self.in_channels, 1, 1) * g)
                if self.filler == "crf_perturbed":
                    self.weight.add_(torch.rand_like(self.weight).sub_(0.5).mul_(1e-3))
            elif self.filler in ("pool", "crf_pool"):
                self.weight.fill_(1.0)
                if self.filler == "crf_pool":
                    self.weight[0, 0, kh // 2, kw // 2] = 0.0
            if self.filler != "uniform" and self.bias is not None:
                self.bias.zero_()
        if self._spec.family == "inv" and not self._spec.fixed:
            self.inv_alpha.fill_(self._spec.alpha)
            self.inv_lambda.fill_(self._spec.lam)
        smooth = getattr(self, "smooth_kernel", None)
        if isinstance(smooth, nn.Parameter):
            smooth.fill_(1.0 / smooth.numel())

    def _expected_guidance_size(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        if self.transposed:
            return tuple(
                _conv_transpose_out(n, k, s, p, op, d)
                for n, k, s, p, op, d in zip(
                    input_hw, self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation
                )
            )  # type: ignore[return-value]
        return input_hw

    @property
    def plain_gaussian(self) -> bool:
        """Whether the kernel is the plain Gaussian of the guidance (no smoothing, normalisation or channel-wise
        kernels): then the convolution gets the guidance, and the fused forms can compute the kernel inside."""
        plain = self.kernel_type == "gaussian" and self.smooth_kernel_type == "none"
        return plain and not (self.pool_only or self.normalize_kernel or self.channel_wise)

    def compute_kernel(
        self, input_for_kernel: Tensor, input_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Computes the adaptive kernel of this layer from the guidance; see :func:`packernel2d`.

        Shape:
            - input_for_kernel: ``(B, F, H_f, W_f)``; ``H_f`` is the input size, or the output size when transposed
            - input_mask: ``(B, 1, H_in, W_in)``
            - kernel: ``(B, 1, kh, kw, H_out, W_out)``; output_mask: ``(B, 1, H_out, W_out)`` or ``None``
        """
        return packernel2d(
            input_for_kernel,
            input_mask,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            kernel_type=self.kernel_type,
            smooth_kernel_type=self.smooth_kernel_type,
            smooth_kernel=getattr(self, "smooth_kernel", None),
            inv_alpha=getattr(self, "inv_alpha", None),
            inv_lambda=getattr(self, "inv_lambda", None),
            channel_wise=self.channel_wise,
            normalize_kernel=self.normalize_kernel,
            transposed=self.transposed,
            native_impl=self.native_impl,
        )

    def extra_repr(self) -> str:
        parts = [] if self.pool_only else [f"{self.in_channels}, {self.out_channels}"]
        parts.append(f"kernel_size={self.kernel_size}")
        if self.stride != (1, 1):
            parts.append(f"stride={self.stride}")
        if self.padding != (0, 0):
            parts.append(f"padding={self.padding}")
        if self.output_padding != (0, 0):
            parts.append(f"output_padding={self.output_padding}")
        if self.dilation != (1, 1):
            parts.append(f"dilation={self.dilation}")
        if not self.pool_only and self.bias is None:
            parts.append("bias=False")
        parts.append(f"kernel_type={self.kernel_type}")
        if self.smooth_kernel_type != "none":
            parts.append(f"smooth_kernel_type={self.smooth_kernel_type}")
        if self.channel_wise:
            parts.append("channel_wise=True")
        if self.normalize_kernel:
            parts.append("normalize_kernel=True")
        if self.shared_filters:
            parts.append("shared_filters=True")
        if not self.pool_only and self.filler != "uniform":
            parts.append(f"filler={self.filler}")
        return ", ".join(parts)


class PacConv2d(_PacConvNd):
    """Pixel-adaptive convolution (Su et al., CVPR 2019, Eq. 3): ``v'_i = sum_j K(f_i, f_j) W[p_i - p_j] v_j + b``.

    Drop-in for the official ``PacConv2d``. With a Gaussian kernel and constant guidance it equals ``nn.Conv2d``.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        kernel_size: Odd window size.
        stride: Stride.
        padding: Zero padding (of the input and of the guidance).
        dilation: Dilation.
        bias: Learn a bias.
        kernel_type: ``'gaussian'`` (``exp(-0.5 d^2)``) or ``'inv_{alpha}_{lambda}[_asym][_fixed]'``
            (``alpha + (d^2 + 1e-4)^(lambda/2)``; learnable ``inv_alpha``/``inv_lambda`` unless ``_fixed``).
        smooth_kernel_type: Reference feature ``f_i``: ``'none'`` (window centre), ``'gaussian'``, ``'average_{s}'``
            or ``'full_{s}'`` (learnable ``smooth_kernel``).
        normalize_kernel: Normalise each output's kernel to sum 1 over in-image taps.
        shared_filters: One depthwise ``(1, 1, k, k)`` filter for all channels (needs ``in_channels == out_channels``).
        filler: Weight init: ``'uniform'``, ``'crf'``, ``'crf_perturbed'``, ``'pool'`` or ``'crf_pool'`` (the last
            two register a fixed ``weight`` buffer of ones and need ``shared_filters``).
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``); ``False`` picks
            the fast path (see the module docstring).

    Shape:
        - input_2d: ``(B, C_in, H, W)``; input_for_kernel: ``(B, F, H, W)``; mask: ``(B, 1, H, W)``
        - output: ``(B, C_out, H_out, W_out)`` as for ``nn.Conv2d``; output_mask: ``(B, 1, H_out, W_out)``

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import PacConv2d
        >>> layer = PacConv2d(16, 32, 5, padding=2)
        >>> x, guide = torch.randn(2, 16, 24, 24), torch.randn(2, 3, 24, 24)
        >>> layer(x, guide).shape
        torch.Size([2, 32, 24, 24])
        >>> layer(x, guide, mask=torch.ones(2, 1, 24, 24))[1].shape  # (output, output_mask) with a mask
        torch.Size([2, 1, 24, 24])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        bias: bool = True,
        kernel_type: str = "gaussian",
        smooth_kernel_type: str = "none",
        normalize_kernel: bool = False,
        shared_filters: bool = False,
        filler: str = "uniform",
        native_impl: bool = False,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            transposed=False,
            output_padding=0,
            bias=bias,
            pool_only=False,
            kernel_type=kernel_type,
            smooth_kernel_type=smooth_kernel_type,
            channel_wise=False,
            normalize_kernel=normalize_kernel,
            shared_filters=shared_filters,
            filler=filler,
            native_impl=native_impl,
        )

    def forward(
        self,
        input_2d: Tensor,
        input_for_kernel: Tensor | None,
        kernel: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Applies PAC; ``kernel`` (from :meth:`compute_kernel`) replaces the guidance when given.

        Returns:
            ``output``, or ``(output, output_mask)`` when ``mask`` is given.
        """
        return pac_layer(self, input_2d, input_for_kernel, kernel, mask)


class PacConvTranspose2d(_PacConvNd):
    """Transposed pixel-adaptive convolution (Su et al., CVPR 2019, Eq. 3 on the zero-inserted input).

    The weight follows ``nn.ConvTranspose2d``: with a Gaussian kernel and constant guidance this layer equals
    ``nn.ConvTranspose2d`` with the same ``weight`` (official weights need
    :func:`official_transposed_weight_to_torch`). The guidance is at the *output* resolution.

    Args:
        in_channels: Input channels ``C_in``.
        out_channels: Output channels ``C_out``.
        kernel_size: Odd window size.
        stride: Up-sampling stride.
        padding: Padding, as in ``nn.ConvTranspose2d``.
        output_padding: Extra size on the bottom/right, as in ``nn.ConvTranspose2d``.
        dilation: Dilation.
        bias: Learn a bias.
        kernel_type: See :class:`PacConv2d`.
        smooth_kernel_type: See :class:`PacConv2d`.
        normalize_kernel: Normalise each output's kernel to sum 1 over taps on real (not zero-inserted) samples.
        shared_filters: One depthwise ``(1, 1, k, k)`` filter for all channels (needs ``in_channels == out_channels``).
        filler: Weight init: ``'uniform'`` or ``'linear'`` (bilinear up-sampling, identity across channels).
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``); ``False`` picks
            the fast path (see the module docstring).

    Shape:
        - input_2d: ``(B, C_in, H, W)``; input_for_kernel: ``(B, F, H_out, W_out)``; mask: ``(B, 1, H, W)``
        - output: ``(B, C_out, H_out, W_out)`` with ``H_out = (H-1) S - 2P + D(k-1) + output_padding + 1``

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import PacConvTranspose2d
        >>> up = PacConvTranspose2d(8, 8, 5, stride=2, padding=2, output_padding=1, filler="linear")
        >>> x, guide = torch.randn(1, 8, 16, 16), torch.randn(1, 3, 32, 32)  # guidance at the output size
        >>> up(x, guide).shape
        torch.Size([1, 8, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        output_padding: IntPair = 0,
        dilation: IntPair = 1,
        bias: bool = True,
        kernel_type: str = "gaussian",
        smooth_kernel_type: str = "none",
        normalize_kernel: bool = False,
        shared_filters: bool = False,
        filler: str = "uniform",
        native_impl: bool = False,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            transposed=True,
            output_padding=output_padding,
            bias=bias,
            pool_only=False,
            kernel_type=kernel_type,
            smooth_kernel_type=smooth_kernel_type,
            channel_wise=False,
            normalize_kernel=normalize_kernel,
            shared_filters=shared_filters,
            filler=filler,
            native_impl=native_impl,
        )

    def forward(
        self,
        input_2d: Tensor,
        input_for_kernel: Tensor | None,
        kernel: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Applies transposed PAC; ``kernel`` (from :meth:`compute_kernel`) replaces the guidance when given.

        Returns:
            ``output``, or ``(output, output_mask)`` when ``mask`` is given.
        """
        return pac_layer(self, input_2d, input_for_kernel, kernel, mask)


class PacPool2d(_PacConvNd):
    """Pixel-adaptive pooling (Su et al., CVPR 2019, Eq. 3 with ``W == 1``): ``v'_i = sum_j K(f_i, f_j) v_j``.

    Drop-in for the official ``PacPool2d``. Unnormalised by default, so it is a kernel-weighted *sum*: with a
    Gaussian kernel and constant guidance it is ``kh*kw`` times ``nn.AvgPool2d`` (``count_include_pad=True``); with
    ``normalize_kernel=True`` it equals ``nn.AvgPool2d(count_include_pad=False)``. Unlike the official module,
    ``repr()`` works.

    Args:
        kernel_size: Odd window size.
        stride: Stride.
        padding: Zero padding (of the input and of the guidance).
        dilation: Dilation.
        kernel_type: See :class:`PacConv2d`.
        smooth_kernel_type: See :class:`PacConv2d`.
        channel_wise: One kernel per channel (the guidance must have ``F == C`` channels, else ``ValueError``).
        normalize_kernel: Normalise each output's kernel to sum 1 over in-image taps.
        out_channels: Number of channels; needed only for a channel-wise, learnable ``'inv_*'`` kernel (one
            ``inv_alpha``/``inv_lambda`` per channel). ``-1`` means unknown.
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``).

    Shape:
        - input_2d: ``(B, C, H, W)``; input_for_kernel: ``(B, F, H, W)``; mask: ``(B, 1, H, W)``
        - output: ``(B, C, H_out, W_out)`` as for ``nn.AvgPool2d``; output_mask: ``(B, 1 or C, H_out, W_out)``

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import PacPool2d
        >>> pool = PacPool2d(3, stride=2, padding=1, normalize_kernel=True)
        >>> pool(torch.randn(1, 4, 16, 16), torch.randn(1, 2, 16, 16)).shape
        torch.Size([1, 4, 8, 8])
    """

    def __init__(
        self,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        kernel_type: str = "gaussian",
        smooth_kernel_type: str = "none",
        channel_wise: bool = False,
        normalize_kernel: bool = False,
        out_channels: int = -1,
        native_impl: bool = False,
    ) -> None:
        if (
            not isinstance(out_channels, int)
            or isinstance(out_channels, bool)
            or out_channels < -1
            or out_channels == 0
        ):
            raise ValueError(f"out_channels must be a positive int or -1, got {out_channels!r}")
        super().__init__(
            -1,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            transposed=False,
            output_padding=0,
            bias=False,
            pool_only=True,
            kernel_type=kernel_type,
            smooth_kernel_type=smooth_kernel_type,
            channel_wise=channel_wise,
            normalize_kernel=normalize_kernel,
            shared_filters=False,
            filler=None,
            native_impl=native_impl,
        )

    def forward(
        self,
        input_2d: Tensor,
        input_for_kernel: Tensor | None,
        kernel: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Applies PAC pooling; ``kernel`` (from :meth:`compute_kernel`) replaces the guidance when given.

        Returns:
            ``output``, or ``(output, output_mask)`` when ``mask`` is given.
        """
        return pac_layer(self, input_2d, input_for_kernel, kernel, mask)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.out_channels == -1 else f"{s}, out_channels={self.out_channels}"
