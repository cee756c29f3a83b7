"""The functional PAC API: :func:`pacconv2d`, :func:`pacconv_transpose2d`, :func:`pacpool2d`, and :func:`pac_layer`
(what the modules' ``forward`` calls).

Each call is checked once (:mod:`~nvresearch.core.layers.pac.checks`), asks the dispatcher which form to run
(:mod:`~nvresearch.core.layers.pac.dispatch`) and runs it. Every form is reachable from here: the kernel forms with a
``kernel``, and the fused Gaussian forms with ``guidance=`` instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.core.layers.pac.checks import (
    IntPair,
    _autocast_on,
    _Call,
    _check_conv_call,
    _check_layer_call,
    _check_pool_call,
    _KernelSpec,
)
from nvresearch.core.layers.pac.dispatch import Route, distance_form, route_conv, route_pool, route_transposed
from nvresearch.core.layers.pac.forms.fused import (
    _PacGaussianCorrelate,
    _PacGaussianCorrelateCols,
    _PacGaussianCorrelateTaps,
)
from nvresearch.core.layers.pac.forms.reference import _reference_correlate, _reference_pool
from nvresearch.core.layers.pac.forms.rows import _PacColsCorrelate, _PacRowsCorrelate
from nvresearch.core.layers.pac.forms.taploop import _PacCorrelate, _pool_taps
from nvresearch.core.layers.pac.forms.unfold import _PacUnfoldCorrelate
from nvresearch.core.layers.pac.kernel import _kernel, _NullContext, _zero_insert_pad, nd2col
from nvresearch.core.layers.pac.plans import _conv_guide_plan, _conv_plan, _transposed_guide_plan

__all__ = ["pac_layer", "pacconv2d", "pacconv_transpose2d", "pacpool2d"]

_GAUSSIAN = _KernelSpec("gaussian", 0.0, 0.0, False, False)


def pacconv2d(
    input: Tensor,
    kernel: Tensor | None,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    shared_filters: bool = False,
    native_impl: bool | None = None,
    *,
    guidance: Tensor | None = None,
    form: str = "auto",
) -> Tensor:
    """Pixel-adaptive convolution (Eq. 3): ``v'_i = sum_j K(f_i, f_j) W[p_i - p_j] v_j + b``.

    Index form: ``out[b,o,y,x] = bias[o] + sum_{c,u,w} W[o,c,u,w] K[b,0,u,w,y,x] v~[b,c,y*S+u*D,x*S+w*D]`` with
    ``v~`` the zero-padded input. With ``K == 1`` this is ``F.conv2d``.

    Args:
        input: Input ``v``.
        kernel: Adaptive kernel from :func:`packernel2d` (same stride, padding and dilation); ``None`` with
            ``guidance``.
        weight: Filter ``W``; ``(1, 1, kh, kw)`` with ``shared_filters`` (one depthwise filter for all channels).
        bias: Optional bias.
        stride: Stride.
        padding: Zero padding.
        dilation: Dilation.
        shared_filters: Apply the single filter depthwise (output channel c uses input channel c only).
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``, as the official
            native path); ``False``/``None`` the fast one.
        guidance: Instead of ``kernel``: the guidance ``f`` of the Gaussian kernel ``exp(-0.5 |f_j - f_i|^2)``
            (no smoothing, no normalisation), which the fused forms compute inside the convolution.
        form: ``'auto'`` (the dispatcher's choice, or the active :func:`~nvresearch.core.layers.pac.pac_form`) or
            one of :data:`~nvresearch.core.layers.pac.FORMS`; ``ValueError`` if it does not apply.

    Shape:
        - input: ``(B, C_in, H, W)``
        - kernel: ``(B, 1, kh, kw, H_out, W_out)``; guidance: ``(B, F, H, W)``
        - weight: ``(C_out, C_in, kh, kw)`` or ``(1, 1, kh, kw)``
        - output: ``(B, C_out, H_out, W_out)`` with ``H_out = floor((H + 2P - D(kh-1) - 1) / S) + 1``

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import packernel2d, pacconv2d
        >>> x, f, w = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(5, 4, 3, 3)
        >>> kernel, _ = packernel2d(f, kernel_size=3, padding=1)
        >>> out = pacconv2d(x, kernel, w, padding=1)
        >>> out.shape
        torch.Size([2, 5, 8, 8])
        >>> torch.allclose(pacconv2d(x, None, w, padding=1, guidance=f, form="taploop"), out, atol=1e-5)
        True
    """
    call = _check_conv_call(input, kernel, guidance, weight, bias, stride, padding, 0, dilation, shared_filters, False)
    return _pacconv2d(input, kernel, guidance, weight, bias, call, shared_filters, native_impl, form)


def pacconv_transpose2d(
    input: Tensor,
    kernel: Tensor | None,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    shared_filters: bool = False,
    native_impl: bool | None = None,
    *,
    guidance: Tensor | None = None,
    form: str = "auto",
) -> Tensor:
    """Transposed pixel-adaptive convolution; with ``K == 1`` it equals ``F.conv_transpose2d`` (same ``weight``).

    The input is spread ``stride`` apart by zero insertion, padded by ``(k-1)*D - P`` on the top/left and that plus
    ``output_padding`` on the bottom/right, and correlated (stride 1, dilation ``D``) with the spatially flipped
    weight, each tap scaled by ``K`` (Eq. 3). Weights of the official layer need
    :func:`official_transposed_weight_to_torch` first.

    Args:
        input: Input ``v``.
        kernel: Adaptive kernel from :func:`packernel2d` with ``transposed=True`` (guidance at output size);
            ``None`` with ``guidance``.
        weight: Filter in the ``nn.ConvTranspose2d`` layout; ``(1, 1, kh, kw)`` with ``shared_filters``.
        bias: Optional bias.
        stride: Up-sampling stride.
        padding: Padding, as in ``nn.ConvTranspose2d``.
        output_padding: Extra size on the bottom/right, as in ``nn.ConvTranspose2d``.
        dilation: Dilation.
        shared_filters: Apply the single filter depthwise (output channel c uses input channel c only).
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``, as the official
            native path); ``False``/``None`` the fast one.
        guidance: Instead of ``kernel``: the guidance at the output size, for the Gaussian kernel (see
            :func:`pacconv2d`), computed inside the convolution by the fused forms.
        form: ``'auto'`` or one of :data:`~nvresearch.core.layers.pac.FORMS` (see :func:`pacconv2d`).

    Shape:
        - input: ``(B, C_in, H, W)``
        - kernel: ``(B, 1, kh, kw, H_out, W_out)``; guidance: ``(B, F, H_out, W_out)``
        - weight: ``(C_in, C_out, kh, kw)`` or ``(1, 1, kh, kw)``
        - output: ``(B, C_out, H_out, W_out)`` with ``H_out = (H - 1) S - 2P + D(kh-1) + output_padding + 1``

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import pacconv_transpose2d
        >>> x, f, w = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 16, 16), torch.randn(4, 2, 5, 5)
        >>> out = pacconv_transpose2d(x, None, w, stride=2, padding=2, output_padding=1, guidance=f)
        >>> out.shape
        torch.Size([1, 2, 16, 16])
    """
    call = _check_conv_call(
        input, kernel, guidance, weight, bias, stride, padding, output_padding, dilation, shared_filters, True
    )
    return _pacconv_transpose2d(input, kernel, guidance, weight, bias, call, shared_filters, native_impl, form)


def pacpool2d(
    input: Tensor,
    kernel: Tensor,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    native_impl: bool | None = None,
    *,
    form: str = "auto",
) -> Tensor:
    """Pixel-adaptive pooling (Sec. 3 of the paper): a kernel-weighted *sum* over each window, no filter, no bias.

    ``out[b,c,y,x] = sum_{u,w} K[b, c or 0, u, w, y, x] v~[b, c, y*S + u*D, x*S + w*D]`` with ``v~`` the
    zero-padded input. With ``K == 1`` this is ``kh*kw`` times ``F.avg_pool2d(count_include_pad=True)``; a kernel
    from :func:`packernel2d` with ``normalize_kernel=True`` makes it an average.

    Args:
        input: Input ``v``.
        kernel: Adaptive kernel from :func:`packernel2d` (same geometry); one channel (shared by all input channels)
            or ``C`` channels (``channel_wise=True``, guidance with ``F == C``).
        kernel_size: Odd window size.
        stride: Stride.
        padding: Zero padding.
        dilation: Dilation.
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``, as the official
            native path); ``False``/``None`` the fast one.
        form: ``'auto'``, ``'taploop'`` (strided views per tap, the default) or ``'reference'``.

    Shape:
        - input: ``(B, C, H, W)``
        - kernel: ``(B, 1, kh, kw, H_out, W_out)`` or ``(B, C, kh, kw, H_out, W_out)``
        - output: ``(B, C, H_out, W_out)`` with ``H_out = floor((H + 2P - D(kh-1) - 1) / S) + 1``

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import packernel2d, pacpool2d
        >>> x, f = torch.randn(1, 3, 8, 8), torch.randn(1, 2, 8, 8)
        >>> kernel, _ = packernel2d(f, kernel_size=3, padding=1, normalize_kernel=True)
        >>> pacpool2d(x, kernel, 3, padding=1).shape
        torch.Size([1, 3, 8, 8])
    """
    call = _check_pool_call(input, kernel, kernel_size, stride, padding, dilation)
    return _pacpool2d(input, kernel, call, native_impl, form)


def pac_layer(
    layer: torch.nn.Module,
    input_2d: Tensor,
    input_for_kernel: Tensor | None,
    kernel: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor | tuple[Tensor, Tensor | None]:
    """The forward of a PAC module (``PacConv2d``, ``PacConvTranspose2d`` or ``PacPool2d``) with its configuration.

    A plain Gaussian layer (no smoothing, normalisation or mask) hands its guidance to the convolution, where the
    fused forms can compute the kernel; any other layer computes its kernel first. The inputs are checked once.

    Returns:
        ``output``, or ``(output, output_mask)`` when ``mask`` is given.

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import PacConv2d, pac_layer
        >>> layer = PacConv2d(4, 5, 3, padding=1)
        >>> pac_layer(layer, torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 5, 8, 8])
    """
    call = _check_layer_call(layer, input_2d, input_for_kernel, kernel, mask)
    output_mask = None
    guidance = None
    if kernel is not None:
        if mask is not None:  # the given kernel is used as is; report outputs with at least one valid neighbour
            k, s, p, op, d = call.kernel_size, call.stride, call.padding, call.output_padding, call.dilation
            valid = nd2col(mask.to(kernel.dtype), k, s, p, op, d, transposed=layer.transposed)
            output_mask = (valid.sum(dim=(2, 3)) != 0).to(kernel.dtype)
    elif mask is None and layer.plain_gaussian:
        guidance = input_for_kernel
    else:
        kernel, output_mask = _kernel(
            input_for_kernel,
            mask,
            call.kernel_size,
            call.stride,
            call.padding,
            call.output_padding,
            call.dilation,
            layer._spec,
            layer._smooth,
            getattr(layer, "smooth_kernel", None),
            getattr(layer, "inv_alpha", None),
            getattr(layer, "inv_lambda", None),
            layer.channel_wise,
            layer.normalize_kernel,
            layer.transposed,
            distance_form(input_for_kernel, layer.native_impl),
        )
    shared, native = layer.shared_filters, layer.native_impl
    if layer.pool_only:
        output = _pacpool2d(input_2d, kernel, call, native, "auto")
    elif layer.transposed:
        output = _pacconv_transpose2d(
            input_2d, kernel, guidance, layer.weight, layer.bias, call, shared, native, "auto"
        )
    else:
        output = _pacconv2d(input_2d, kernel, guidance, layer.weight, layer.bias, call, shared, native, "auto")
    return output if mask is None else (output, output_mask)


# ----------------------------------------------------------------------------------------------------------------------
# Checked calls -> the dispatcher's form
# ----------------------------------------------------------------------------------------------------------------------
# the rows-geometry forms: channels last (rows) or first (cols); with a given kernel or the Gaussian fused in
_ROWS = {"rows": _PacRowsCorrelate, "cols": _PacColsCorrelate}
_FUSED_ROWS = {"fused_rows": _PacGaussianCorrelate, "fused_cols": _PacGaussianCorrelateCols}


def _guided_kernel(guidance: Tensor, call: _Call, transposed: bool, route: Route) -> Tensor:
    """The Gaussian kernel of ``guidance`` for a form that takes a kernel (what the fused forms compute inside)."""
    k, s, p, op, d = call.kernel_size, call.stride, call.padding, call.output_padding, call.dilation
    no_smoothing = ("none", 0)
    args = (None, None, None, False, False, transposed, route.distance)
    return _kernel(guidance, None, k, s, p, op, d, _GAUSSIAN, no_smoothing, *args)[0]


def _pacconv2d(
    input: Tensor,
    kernel: Tensor | None,
    guidance: Tensor | None,
    weight: Tensor,
    bias: Tensor | None,
    call: _Call,
    shared: bool,
    native_impl: bool | None,
    form: str,
) -> Tensor:
    channels = min(input.shape[1], call.out_channels)
    k, s, p, d = call.kernel_size, call.stride, call.padding, call.dilation
    route = route_conv(input, guidance, channels, k, s, p, d, native_impl, form)
    if route.form in _FUSED_ROWS:
        gplan = _conv_guide_plan(k, p, d, route.rows.out_hw)
        return _FUSED_ROWS[route.form].apply(input, guidance, weight, bias, route.rows, gplan, shared)
    if kernel is None:
        kernel = _guided_kernel(guidance, call, False, route)
    if route.form in _ROWS:
        return _correlate(route, input, kernel, weight, bias, shared, route.rows)
    x = F.pad(input, (p[1], p[1], p[0], p[0])) if (p[0] or p[1]) else input
    return _correlate(route, x, kernel, weight, bias, shared, _conv_plan(k, s, d, call.out_hw), s, d)


def _pacconv_transpose2d(
    input: Tensor,
    kernel: Tensor | None,
    guidance: Tensor | None,
    weight: Tensor,
    bias: Tensor | None,
    call: _Call,
    shared: bool,
    native_impl: bool | None,
    form: str,
) -> Tensor:
    channels = min(input.shape[1], call.out_channels)
    k, s, p, op, d, out_hw = (
        call.kernel_size,
        call.stride,
        call.padding,
        call.output_padding,
        call.dilation,
        call.out_hw,
    )
    route = route_transposed(input, guidance, channels, k, s, p, d, out_hw, native_impl, form)
    w_corr = weight.flip(-2, -1) if shared else weight.transpose(0, 1).flip(-2, -1)
    if route.form in _FUSED_ROWS:
        gplan = _transposed_guide_plan(route.taps, k, s, d)
        return _FUSED_ROWS[route.form].apply(input, guidance, w_corr, bias, route.rows, gplan, shared)
    if route.form == "fused_taps":
        gplan = _transposed_guide_plan(route.taps, k, s, d)
        args = (route.taps, route.rows.pad, gplan, shared, route.group_bytes)
        return _PacGaussianCorrelateTaps.apply(input, guidance, w_corr, bias, *args)
    if kernel is None:
        kernel = _guided_kernel(guidance, call, True, route)
    if route.form in _ROWS:
        return _correlate(route, input, kernel, w_corr, bias, shared, route.rows)
    if route.form in ("unfold", "reference"):  # these correlate the zero-inserted, padded input with stride 1
        before = tuple((ki - 1) * di - pi for ki, di, pi in zip(k, d, p))
        after = tuple(bi + oi for bi, oi in zip(before, op))
        x = _zero_insert_pad(input, s, before, after)
        return _correlate(route, x, kernel, w_corr, bias, shared, None, (1, 1), d)
    x = F.pad(input, route.rows.pad) if any(route.rows.pad) else input
    return _correlate(route, x, kernel, w_corr, bias, shared, route.taps)


def _correlate(
    route: Route,
    x: Tensor,
    kernel: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    shared: bool,
    plan: object,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
) -> Tensor:
    """Runs a kernel form (``rows``, ``cols``, ``taploop``, ``unfold``, ``reference``) on ``x`` (padded unless
    ``rows``/``cols``)."""
    device_type = x.device.type
    autocast = _autocast_on(device_type)
    if autocast:  # follow the autocast policy of convolutions: run in the low-precision dtype
        dtype = torch.get_autocast_dtype(device_type)
        x, kernel, weight = x.to(dtype), kernel.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    if route.form == "reference":
        return _reference_correlate(x, kernel, weight, bias, stride, dilation, shared)
    with torch.autocast(device_type, enabled=False) if autocast else _NullContext():
        if route.form in _ROWS:
            return _ROWS[route.form].apply(x, kernel, weight, bias, plan, shared)
        if route.form == "unfold":
            return _PacUnfoldCorrelate.apply(x, kernel, weight, bias, stride, dilation, shared, route.chunk_bytes)
        return _PacCorrelate.apply(x, kernel, weight, bias, plan, shared, route.group_bytes)


def _pacpool2d(input: Tensor, kernel: Tensor, call: _Call, native_impl: bool | None, form: str) -> Tensor:
    k, s, p, d = call.kernel_size, call.stride, call.padding, call.dilation
    how = route_pool(native_impl, form)
    device_type = input.device.type
    if _autocast_on(device_type):  # same policy as the convolutions: run in the low-precision dtype
        dtype = torch.get_autocast_dtype(device_type)
        input, kernel = input.to(dtype), kernel.to(dtype)
    x = F.pad(input, (p[1], p[1], p[0], p[0])) if (p[0] or p[1]) else input
    if how == "reference":
        return _reference_pool(x, kernel, k, s, d)
    return _pool_taps(x, kernel, k, s, d)
