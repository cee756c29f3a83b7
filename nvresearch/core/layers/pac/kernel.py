"""The adaptive kernel ``K(f_i, f_j)`` of PAC (Eq. 3): :func:`packernel2d`, its squared-distance ``Function`` and
:func:`nd2col` (the windows of an image, channel and tap axes apart)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.core.layers.pac.checks import (
    _INV_EPS,
    IntPair,
    _autocast_on,
    _check_float,
    _check_geometry,
    _check_output_padding,
    _check_tensor,
    _conv_out,
    _conv_transpose_out,
    _default_smooth_kernel,
    _KernelSpec,
    _pair,
    _parse_kernel_type,
    _parse_smooth_kernel_type,
    _transposed_in_size,
)
from nvresearch.core.layers.pac.dispatch import _KERNEL_FORMS, distance_form
from nvresearch.core.layers.pac.plans import _tap_slices

__all__ = ["nd2col", "packernel2d"]


def _zero_insert_pad(
    x: Tensor, stride: tuple[int, int], pad_before: tuple[int, int], pad_after: tuple[int, int]
) -> Tensor:
    """Inserts ``stride - 1`` zeros between samples, then pads (negative = crop) ``before``/``after`` per dim.

    Shape: ``(B, C, H, W) -> (B, C, (H-1)*sh + 1 + before_h + after_h, (W-1)*sw + 1 + before_w + after_w)``.
    """
    b, c, h, w = x.shape
    sh, sw = stride
    if sh > 1 or sw > 1:
        # (B, C, H, 1, W, 1) padded to (B, C, H, sh, W, sw) then flattened: sample (i, j) lands at (i*sh, j*sw).
        x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, sw - 1, 0, 0, 0, sh - 1)).reshape(b, c, h * sh, w * sw)
    # The flattened grid has sh - 1 trailing zero rows (sw - 1 columns) beyond (H-1)*sh + 1; fold that into the pad.
    return F.pad(x, (pad_before[1], pad_after[1] - (sw - 1), pad_before[0], pad_after[0] - (sh - 1)))


def nd2col(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    transposed: bool = False,
) -> Tensor:
    """Unfolds k×k (dilated) windows of a zero-padded image, keeping the channel and tap axes separate.

    For ``transposed=True`` the windows are those a transposed convolution correlates with: samples are spread
    ``stride`` apart by zero insertion, padded by ``(k-1)*dilation - padding`` before and that plus
    ``output_padding`` after, and the windows are taken with stride 1.

    Args:
        input: Image to unfold.
        kernel_size: Window size (odd).
        stride: Window stride (the up-sampling factor when ``transposed``).
        padding: Zero padding, as in ``nn.Conv2d`` / ``nn.ConvTranspose2d``.
        output_padding: Extra rows/columns on the bottom/right (``transposed`` only).
        dilation: Spacing between window taps.
        transposed: Use the transposed-convolution geometry.

    Returns:
        The windows ``cols[b, c, u, w, y, x]``.

    Shape:
        - input: ``(B, C, H, W)``
        - output: ``(B, C, kh, kw, H_out, W_out)`` with ``H_out`` as for ``nn.Conv2d`` (``nn.ConvTranspose2d`` when
          ``transposed``).

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import nd2col
        >>> nd2col(torch.randn(1, 2, 6, 6), 3, padding=1).shape
        torch.Size([1, 2, 3, 3, 6, 6])
    """
    _check_tensor(input, "input", 4, "(B, C, H, W)")
    k, s, p, op, d = (
        _pair(v, n)
        for v, n in (
            (kernel_size, "kernel_size"),
            (stride, "stride"),
            (padding, "padding"),
            (output_padding, "output_padding"),
            (dilation, "dilation"),
        )
    )
    _check_geometry(k, s, p, d)
    b, c, h, w = input.shape
    if transposed:
        _check_output_padding(op, s, d)
        before = tuple((ki - 1) * di - pi for ki, di, pi in zip(k, d, p))
        after = tuple(bi + oi for bi, oi in zip(before, op))
        x = _zero_insert_pad(input, s, before, after)
        out_h, out_w = (
            _conv_transpose_out(n, ki, si, pi, oi, di) for n, ki, si, pi, oi, di in zip((h, w), k, s, p, op, d)
        )
        cols = F.unfold(x, k, dilation=d, padding=0, stride=1)
    else:
        out_h, out_w = (_conv_out(n, ki, si, pi, di) for n, ki, si, pi, di in zip((h, w), k, s, p, d))
        cols = F.unfold(input, k, dilation=d, padding=p, stride=s)
    return cols.view(b, c, k[0], k[1], out_h, out_w)


# ----------------------------------------------------------------------------------------------------------------------


def packernel2d(
    input: Tensor,
    mask: Tensor | None = None,
    kernel_size: IntPair = 0,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    kernel_type: str = "gaussian",
    smooth_kernel_type: str = "none",
    smooth_kernel: Tensor | None = None,
    inv_alpha: Tensor | float | None = None,
    inv_lambda: Tensor | float | None = None,
    channel_wise: bool = False,
    normalize_kernel: bool = False,
    transposed: bool = False,
    native_impl: bool | None = None,
    *,
    form: str = "auto",
) -> tuple[Tensor, Tensor | None]:
    """Computes the adaptive kernel ``K(f_i, f_j)`` of Eq. 3 on every (dilated) window of the guidance ``f``.

    ``K[b, 0, u, w, y, x] = kappa(f~[b, :, y*S + u*D, x*S + w*D] - r[b, :, y, x])`` where ``f~`` is the zero-padded
    guidance and the reference ``r`` is the window centre (or the smoothed guidance, ``smooth_kernel_type``).
    ``kappa`` is ``exp(-0.5 * d^2)`` (``'gaussian'``) or ``alpha + (d^2 + 1e-4)^(lambda / 2)`` (``'inv_*'``), with
    ``d^2`` the squared difference summed over channels (per channel when ``channel_wise``); ``_asym`` clamps the
    signed difference at 0 before squaring.

    For ``transposed=True`` the guidance is at the *output* resolution and the windows use stride 1 and padding
    ``(k-1)*D // 2`` ("same"), whatever ``stride``/``padding`` are; those (with ``output_padding``) only define which
    taps hold real input samples, for normalisation and masks.

    Args:
        input: Guidance features ``f``.
        mask: Optional validity of the layer input (1 = valid); at the input resolution of the layer.
        kernel_size: Window size (odd).
        stride: Layer stride.
        padding: Layer zero padding.
        output_padding: Transposed layers only, as in ``nn.ConvTranspose2d``.
        dilation: Layer dilation.
        kernel_type: ``'gaussian'`` or ``'inv_{alpha}_{lambda}[_asym][_fixed]'``.
        smooth_kernel_type: ``'none'``, ``'gaussian'`` (3×3), ``'average_{s}'`` or ``'full_{s}'``.
        smooth_kernel: Smoothing filter ``(1, 1, s, s)`` or ``(s, s)``; defaults to the fixed/initial filter.
        inv_alpha: ``alpha`` of the inverse kernel (scalar, or ``(F,)`` when ``channel_wise``); defaults to the value
            in ``kernel_type``.
        inv_lambda: ``lambda`` of the inverse kernel, like ``inv_alpha``.
        channel_wise: Keep one kernel per guidance channel instead of summing the distance over channels.
        normalize_kernel: Make each output's kernel sum to 1 over the taps that hold (valid) input samples.
        transposed: Compute the kernel of a transposed PAC.
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``, as the official
            native path); ``False``/``None`` the fast one.
        form: How the squared distances are computed: ``'auto'`` (the dispatcher's choice, or the active
            :func:`~nvresearch.core.layers.pac.pac_form`), ``'taploop'``, ``'unfold'`` or ``'reference'``.

    Returns:
        ``(kernel, output_mask)``. ``output_mask`` is ``None`` unless ``mask`` is given; then it is 1 where the
        normaliser is non-zero (at least one valid neighbour) and 0 elsewhere. With a mask the kernel is zero on
        invalid taps and rescaled by the fraction of valid taps (or normalised to sum 1 with ``normalize_kernel``).

    Shape:
        - input: ``(B, F, H_f, W_f)``
        - mask: ``(B, 1, H_in, W_in)`` (``H_in = H_f`` unless ``transposed``)
        - kernel: ``(B, 1, kh, kw, H_out, W_out)``, or ``(B, F, kh, kw, H_out, W_out)`` when ``channel_wise``
        - output_mask: ``(B, 1 or F, H_out, W_out)``

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import packernel2d
        >>> kernel, _ = packernel2d(torch.randn(2, 3, 8, 8), kernel_size=3, padding=1)
        >>> kernel.shape
        torch.Size([2, 1, 3, 3, 8, 8])
    """
    _check_tensor(input, "input (guidance)", 4, "(B, F, H, W)")
    _check_float(input, "input (guidance)")
    k, s, p, op, d = (
        _pair(v, n)
        for v, n in (
            (kernel_size, "kernel_size"),
            (stride, "stride"),
            (padding, "padding"),
            (output_padding, "output_padding"),
            (dilation, "dilation"),
        )
    )
    _check_geometry(k, s, p, d)
    if transposed:
        _check_output_padding(op, s, d)
    spec = _parse_kernel_type(kernel_type)
    smooth_kind, smooth_size = _parse_smooth_kernel_type(smooth_kernel_type)
    if spec.family == "gaussian" and (inv_alpha is not None or inv_lambda is not None):
        raise ValueError("inv_alpha/inv_lambda are only used by 'inv_*' kernel types, got kernel_type='gaussian'")
    if smooth_kind == "none" and smooth_kernel is not None:
        raise ValueError("smooth_kernel was given but smooth_kernel_type is 'none'")
    if form not in _KERNEL_FORMS:
        raise ValueError(f"packernel2d computes its distances with one of the forms {_KERNEL_FORMS}, got {form!r}")
    distance = distance_form(input, native_impl, form)
    return _kernel(
        input,
        mask,
        k,
        s,
        p,
        op,
        d,
        spec,
        (smooth_kind, smooth_size),
        smooth_kernel,
        inv_alpha,
        inv_lambda,
        channel_wise,
        normalize_kernel,
        transposed,
        distance,
    )


def _kernel(
    input: Tensor,
    mask: Tensor | None,
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    op: tuple[int, int],
    d: tuple[int, int],
    spec: _KernelSpec,
    smooth: tuple[str, int],
    smooth_kernel: Tensor | None,
    inv_alpha: Tensor | float | None,
    inv_lambda: Tensor | float | None,
    channel_wise: bool,
    normalize_kernel: bool,
    transposed: bool,
    distance: str,
) -> tuple[Tensor, Tensor | None]:
    """:func:`packernel2d` on parsed arguments: the modules call it after their own checks. ``distance`` is the
    dispatcher's form of the squared distances (``'taploop'``, ``'unfold'`` or ``'reference'``)."""
    smooth_kind, smooth_size = smooth

    b, nf, h, w = input.shape
    device_type = input.device.type
    autocast = _autocast_on(device_type)
    # Squared feature distances overflow float16 past a difference of ~256: compute in float32 for low-precision
    # guidance.
    work_dtype = torch.float32 if (autocast or input.dtype in (torch.float16, torch.bfloat16)) else input.dtype
    out_dtype = work_dtype if autocast else input.dtype

    if transposed:
        k_stride, k_pad = (1, 1), tuple((ki - 1) * di // 2 for ki, di in zip(k, d))
    else:
        k_stride, k_pad = s, p
    out_h, out_w = (_conv_out(n, ki, si, pi, di) for n, ki, si, pi, di in zip((h, w), k, k_stride, k_pad, d))
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"input (guidance) of spatial size {(h, w)} is too small for kernel_size={k}, padding={p}, dilation={d}"
        )

    # Size of the layer input (where real samples live), for masks and normalisation.
    if transposed:
        in_h = _transposed_in_size(h, k[0], s[0], p[0], op[0], d[0], "input (guidance) height")
        in_w = _transposed_in_size(w, k[1], s[1], p[1], op[1], d[1], "input (guidance) width")
    else:
        in_h, in_w = h, w
    if mask is not None:
        _check_tensor(mask, "mask", 4, f"(B, 1, H_in, W_in) = {(b, 1, in_h, in_w)}")
        if tuple(mask.shape) != (b, 1, in_h, in_w):
            raise ValueError(f"mask must have shape (B, 1, H_in, W_in) = {(b, 1, in_h, in_w)}, got {tuple(mask.shape)}")

    ctx = torch.autocast(device_type, enabled=False) if autocast else _NullContext()
    with ctx:
        f = input.to(work_dtype)
        f_pad = F.pad(f, (k_pad[1], k_pad[1], k_pad[0], k_pad[0])) if any(k_pad) else f
        if smooth_kind == "none":
            ref = f_pad[(slice(None), slice(None)) + _tap_slices(k[0] // 2, k[1] // 2, d, k_stride, (out_h, out_w))]
        else:
            ref = _smoothed_reference(f, smooth_kind, smooth_size, smooth_kernel, k, k_stride, k_pad, d)
            ref = ref.view(b, nf, out_h, out_w)
        if distance == "reference":  # plain autograd on the unfolded guidance windows
            cols = F.unfold(f_pad, k, dilation=d, stride=k_stride).view(b, nf, k[0], k[1], out_h, out_w)
            diff = cols - ref[:, :, None, None]
            if spec.asym:
                diff = diff.clamp_min(0)
            dist2 = diff * diff if channel_wise else (diff * diff).sum(dim=1, keepdim=True)
        else:  # (B, 1 or F, kh, kw, H_out, W_out), without materialising the guidance windows for backward
            unfold = distance == "unfold"
            dist2 = _PacSquaredDistance.apply(f_pad, ref, k, k_stride, d, spec.asym, channel_wise, unfold)
        if spec.family == "gaussian":
            kernel = torch.exp(-0.5 * dist2)
        else:
            alpha = _inv_param(inv_alpha, spec.alpha, "inv_alpha", nf if channel_wise else None, f)
            lam = _inv_param(inv_lambda, spec.lam, "inv_lambda", nf if channel_wise else None, f)
            kernel = alpha + (dist2 + _INV_EPS) ** (0.5 * lam)

        output_mask = None
        if normalize_kernel or mask is not None:
            ones = f.new_ones(1, 1, in_h, in_w)
            in_image = nd2col(ones, k, s, p, op, d, transposed=transposed)  # taps on real samples
            if mask is None:
                kernel = kernel * in_image
                norm = kernel.sum(dim=(2, 3), keepdim=True)
            else:
                valid = nd2col(mask.to(work_dtype), k, s, p, op, d, transposed=transposed)
                kernel = kernel * valid
                if normalize_kernel:
                    norm = kernel.sum(dim=(2, 3), keepdim=True)
                else:  # rescale by the fraction of valid in-image taps (normalised-convolution style)
                    norm = valid.sum(dim=(2, 3), keepdim=True) / in_image.sum(dim=(2, 3), keepdim=True).clamp_min(1)
                output_mask = (norm != 0).to(out_dtype).view(b, norm.shape[1], out_h, out_w)
            kernel = kernel / (norm + (norm == 0).to(norm.dtype))
    return kernel.to(out_dtype), output_mask


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _inv_param(value: Tensor | float | None, default: float, name: str, channels: int | None, like: Tensor) -> Tensor:
    if value is None:
        value = default
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.numel() == 1:
        return t.reshape(())
    if channels is not None and t.numel() == channels:
        return t.reshape(1, channels, 1, 1, 1, 1)
    expected = "a scalar" if channels is None else f"a scalar or ({channels},)"
    raise ValueError(f"{name} must be {expected}, got shape {tuple(t.shape)}")


def _smoothed_reference(
    f: Tensor,
    kind: str,
    size: int,
    smooth_kernel: Tensor | None,
    k: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor:
    """Per-channel smoothed guidance, sampled at the window centres. Shape ``(B*F, 1, H_out, W_out)``."""
    if smooth_kernel is None:
        smooth_kernel = _default_smooth_kernel(kind, size, f.dtype)
    if not isinstance(smooth_kernel, Tensor):
        raise TypeError(f"smooth_kernel must be a Tensor, got {type(smooth_kernel).__name__}")
    if smooth_kernel.numel() != size * size or tuple(smooth_kernel.shape[-2:]) != (size, size):
        raise ValueError(
            f"smooth_kernel must have shape (1, 1, {size}, {size}) for this smooth_kernel_type, "
            f"got {tuple(smooth_kernel.shape)}"
        )
    weight = smooth_kernel.to(device=f.device, dtype=f.dtype).reshape(1, 1, size, size)
    b, nf, h, w = f.shape
    x = f.reshape(b * nf, 1, h, w)
    # Centre the smoothing window on the PAC window centre (padded index y*S + c*D).
    pads = [pi - ((ki - 1) * di - (size - 1)) // 2 for ki, di, pi in zip(k, dilation, padding)]
    if pads[0] < 0 or pads[1] < 0:
        ch, cw = max(-pads[0], 0), max(-pads[1], 0)
        x = x[:, :, ch : h - ch, cw : w - cw]
        pads = [max(pads[0], 0), max(pads[1], 0)]
    return F.conv2d(x, weight, stride=stride, padding=tuple(pads))


class _PacSquaredDistance(torch.autograd.Function):
    """``d2[b,c',u,w,y,x] = sum_c (f[b,c,y*S+u*D,x*S+w*D] - r[b,c,y,x])^2`` on an already padded ``f``.

    ``c'`` is 0, or ``c`` (no sum) when ``channel_wise``; ``asym`` clamps the difference at 0 before squaring. Only
    ``f`` and ``r`` are saved; the backward recomputes the differences. ``unfold`` picks the form: one ``F.unfold``
    (a few large kernels, for CUDA) instead of a loop over taps (the CPU form).
    """

    @staticmethod
    def _unfolded_diff(f: Tensor, ref: Tensor, geometry: tuple) -> Tensor:
        kernel_size, stride, dilation, asym = geometry
        cols = F.unfold(f, kernel_size, dilation=dilation, stride=stride)
        diff = cols.view(*f.shape[:2], *kernel_size, *ref.shape[-2:]) - ref[:, :, None, None]
        return diff.clamp_min(0) if asym else diff

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        f: Tensor,
        ref: Tensor,
        kernel_size: tuple[int, int],
        stride: tuple[int, int],
        dilation: tuple[int, int],
        asym: bool,
        channel_wise: bool,
        unfold: bool = False,
    ) -> Tensor:
        ctx.save_for_backward(f, ref)
        ctx.geometry = (kernel_size, stride, dilation, asym)
        ctx.unfold = unfold
        if unfold:
            sq = _PacSquaredDistance._unfolded_diff(f, ref, ctx.geometry).square()
            return sq if channel_wise else sq.sum(dim=1, keepdim=True)
        out_hw = tuple(ref.shape[-2:])
        taps = []
        for u in range(kernel_size[0]):
            for v in range(kernel_size[1]):
                sh, sw = _tap_slices(u, v, dilation, stride, out_hw)
                diff = f[:, :, sh, sw] - ref
                if asym:
                    diff = diff.clamp_min(0)
                sq = diff * diff
                taps.append(sq if channel_wise else sq.sum(dim=1, keepdim=True))
        b, n = taps[0].shape[:2]
        return torch.stack(taps, dim=2).view(b, n, kernel_size[0], kernel_size[1], *out_hw)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        f, ref = ctx.saved_tensors
        kernel_size, stride, dilation, asym = ctx.geometry
        need_f, need_ref = ctx.needs_input_grad[:2]
        grad_f = grad_ref = None
        if ctx.unfold and (need_f or need_ref):  # d/dx clamp(x, 0)^2 = 2 clamp(x, 0)
            g_diff = 2 * _PacSquaredDistance._unfolded_diff(f, ref, ctx.geometry) * grad_out
            if need_f:
                taps, outputs = kernel_size[0] * kernel_size[1], ref.shape[-2] * ref.shape[-1]
                cols = g_diff.reshape(f.shape[0], f.shape[1] * taps, outputs)
                grad_f = F.fold(cols, f.shape[-2:], kernel_size, dilation=dilation, stride=stride)
            if need_ref:
                grad_ref = -g_diff.sum(dim=(2, 3))
        elif need_f or need_ref:
            out_hw = tuple(ref.shape[-2:])
            grad_f = torch.zeros_like(f) if need_f else None
            grad_ref = torch.zeros_like(ref) if need_ref else None
            for u in range(kernel_size[0]):
                for v in range(kernel_size[1]):
                    sh, sw = _tap_slices(u, v, dilation, stride, out_hw)
                    diff = f[:, :, sh, sw] - ref
                    if asym:
                        diff = diff.clamp_min(0)
                    g_diff = 2 * diff * grad_out[:, :, u, v]
                    if need_f:
                        grad_f[:, :, sh, sw] += g_diff
                    if need_ref:
                        grad_ref -= g_diff
        return grad_f, grad_ref, None, None, None, None, None, None
