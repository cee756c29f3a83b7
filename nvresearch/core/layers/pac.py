"""Pixel-adaptive convolution (PAC) layers (Su et al., "Pixel-Adaptive Convolutional Neural Networks", CVPR 2019).

PAC modulates a spatially shared filter ``W`` with a kernel ``K`` computed from a guidance ("adapting") feature
``f`` (Eq. 3 of the paper)::

    v'_i = sum_{j in Omega(i)} K(f_i, f_j) W[p_i - p_j] v_j + b

With ``K == 1`` (e.g. a Gaussian kernel on constant guidance) PAC is an ordinary convolution. The argument names and
order of the functions and modules match the official NVlabs/pacnet layers, so code written for those ports by
changing the import. Behaviour that differs from the official code, on purpose:

- ``PacConvTranspose2d`` follows the weight convention of :class:`torch.nn.ConvTranspose2d`: with ``K == 1`` it
  equals ``nn.ConvTranspose2d`` with the same ``weight``. The official layer correlates with the *unflipped* weight,
  so official transposed weights must be flipped spatially when loaded: :func:`official_transposed_weight_to_torch`.
- The mask path works (upstream raises on current torch): ``output_mask = (norm != 0)`` as float, and wherever the
  normaliser is 0 the kernel is divided by 1 instead.
- Several implementation forms, one answer (tests compare them in float64, outputs and all gradients), picked per
  device and layer:

  * **rows form** (the CPU default of stride-1 ``PacConv2d`` and of ``PacConvTranspose2d`` with at least 32
    channels and little padding, :func:`_rows_worth_it`): the padded input as
    one channels-last ``(B*H*W, C)`` matrix of pixel rows, where every tap's input is the same matrix shifted by a
    row offset; one thin matrix product per tap on cache-sized tiles of rows, recomputed in backward (autograd keeps
    only the input, the kernel and the weight). Transposed layers are decomposed into ``stride**2`` phases that
    read the original input, so no multiplication touches an inserted zero.
  * **fused Gaussian** (what those layers run on the CPU for the common configuration: Gaussian kernel, no
    smoothing, no normalisation, no mask, float32/float64): the rows form with ``K`` computed tap by tap from the
    guidance inside the same autograd ``Function`` and never stored; only the kernel entries that meet real input
    samples are computed. Narrower transposed layers run the same fusion with channels first.
  * **tap loop** (strided or narrow ``PacConv2d``, narrow transposed layers with a given kernel): strided slices
    per tap with channels first, recomputed in backward.
  * **unfold form** (CUDA, where the loops above are launch-bound): im2col and one matrix product per batch chunk,
    the im2col recomputed in backward instead of kept.
  * **reference** (``native_impl=True``, as the official native path): plain autograd on ``F.unfold`` and
    ``einsum``. Obviously correct and memory-hungry (it keeps the im2col); the other forms are tested against it.

  Every option works on every form where it applies (the kernel comes from :func:`packernel2d` unless fused), and
  the backward passes are themselves differentiable (double backward works).
- With ``dilation > 1`` the smoothed reference feature (``smooth_kernel_type != 'none'``) is centred on the window
  centre; the official padding ``P - (k - k_s) / 2`` is the ``dilation == 1`` special case of the one used here.
- A module called with an explicit ``kernel=`` and a ``mask=`` returns ``(output, output_mask)`` as documented, with
  ``output_mask`` marking outputs that have at least one valid neighbour (the official code drops the mask).
- ``PacPool2d`` needs no ``bias`` attribute for ``repr()`` (the official one raises ``AttributeError``).
- The kernel is computed in float32 when the guidance is float16/bfloat16 or autocast is active (the squared
  feature distance overflows float16 easily).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PacConv2d",
    "PacConvTranspose2d",
    "PacPool2d",
    "load_official_state_dict",
    "nd2col",
    "official_transposed_weight_to_torch",
    "pacconv2d",
    "pacconv_transpose2d",
    "packernel2d",
    "pacpool2d",
]

IntPair = int | tuple[int, int] | Sequence[int]

_INV_EPS = 1e-4
_KERNEL_TYPE_FORMS = (
    "'gaussian', 'inv_{alpha}_{lambda}', 'inv_{alpha}_{lambda}_asym', 'inv_{alpha}_{lambda}_fixed' or "
    "'inv_{alpha}_{lambda}_asym_fixed' (alpha and lambda are numbers, e.g. 'inv_0.5_-2')"
)
_SMOOTH_KERNEL_TYPE_FORMS = "'none', 'gaussian', 'average_{s}' or 'full_{s}' (s an odd positive integer, e.g. 'full_3')"
_CONV_FILLERS = ("uniform", "crf", "crf_perturbed", "pool", "crf_pool")
_TRANSPOSED_FILLERS = ("uniform", "linear")


# ----------------------------------------------------------------------------------------------------------------------
# Argument parsing and validation helpers
# ----------------------------------------------------------------------------------------------------------------------
class _KernelSpec(NamedTuple):
    family: str  # 'gaussian' or 'inv'
    alpha: float
    lam: float
    asym: bool
    fixed: bool


def _parse_kernel_type(kernel_type: str) -> _KernelSpec:
    if not isinstance(kernel_type, str):
        raise TypeError(f"kernel_type must be a str, got {type(kernel_type).__name__}")
    if kernel_type == "gaussian":
        return _KernelSpec("gaussian", 0.0, 0.0, False, False)
    parts = kernel_type.split("_")
    error = ValueError(f"invalid kernel_type {kernel_type!r}; valid forms are {_KERNEL_TYPE_FORMS}")
    suffixes = parts[3:]
    if (
        len(parts) < 3
        or parts[0] != "inv"
        or not set(suffixes) <= {"asym", "fixed"}
        or len(set(suffixes)) != len(suffixes)
    ):
        raise error
    try:
        alpha, lam = float(parts[1]), float(parts[2])
    except ValueError:
        raise error from None
    if not (math.isfinite(alpha) and math.isfinite(lam)):
        raise error
    return _KernelSpec("inv", alpha, lam, "asym" in suffixes, "fixed" in suffixes)


def _parse_smooth_kernel_type(smooth_kernel_type: str) -> tuple[str, int]:
    """Returns ``(kind, size)``; ``size`` is 0 for ``'none'``."""
    if not isinstance(smooth_kernel_type, str):
        raise TypeError(f"smooth_kernel_type must be a str, got {type(smooth_kernel_type).__name__}")
    if smooth_kernel_type == "none":
        return "none", 0
    if smooth_kernel_type == "gaussian":
        return "gaussian", 3
    kind, _, size = smooth_kernel_type.partition("_")
    if kind in ("average", "full") and size.isdigit() and int(size) % 2 == 1:
        return kind, int(size)
    raise ValueError(f"invalid smooth_kernel_type {smooth_kernel_type!r}; valid forms are {_SMOOTH_KERNEL_TYPE_FORMS}")


def _default_smooth_kernel(kind: str, size: int, dtype: torch.dtype | None = None) -> Tensor:
    """The fixed (or initial, for ``full_{s}``) smoothing filter, shape ``(1, 1, s, s)``."""
    if kind == "gaussian":
        profile = torch.tensor([0.25, 0.5, 0.25], dtype=dtype)
        return torch.outer(profile, profile).view(1, 1, 3, 3)
    return torch.full((1, 1, size, size), 1.0 / (size * size), dtype=dtype)


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return value, value
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def _check_geometry(
    kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]
) -> None:
    if any(k < 1 or k % 2 == 0 for k in kernel_size):
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if any(s < 1 for s in stride):
        raise ValueError(f"stride must be positive, got {stride}")
    if any(p < 0 for p in padding):
        raise ValueError(f"padding must be non-negative, got {padding}")
    if any(d < 1 for d in dilation):
        raise ValueError(f"dilation must be positive, got {dilation}")


def _check_output_padding(output_padding: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> None:
    if any(op < 0 or op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"output_padding must be non-negative and smaller than either stride or dilation, got "
            f"output_padding={output_padding}, stride={stride}, dilation={dilation}"
        )


def _check_tensor(x: object, name: str, ndim: int, shape_doc: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor of shape {shape_doc}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D of shape {shape_doc}, got shape {tuple(x.shape)}")
    return x


def _check_float(x: Tensor, name: str) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except (RuntimeError, TypeError, ValueError):  # device types without autocast support
        return False


def _check_same_dtype(tensors: Sequence[tuple[str, Tensor | None]], device_type: str) -> None:
    # Under autocast mixed dtypes are expected (the op casts), exactly as for nn.Conv2d.
    if _autocast_on(device_type):
        return
    present = [(n, t) for n, t in tensors if t is not None]
    ref_name, ref = present[0]
    for n, t in present[1:]:
        if t.dtype != ref.dtype:
            raise TypeError(f"{n} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; they must match")


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_transpose_out(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def _transposed_in_size(out_size: int, k: int, s: int, p: int, op: int, d: int, name: str) -> int:
    """Inverts :func:`_conv_transpose_out`; raises if no input size produces ``out_size``."""
    num = out_size + 2 * p - d * (k - 1) - op - 1
    if num < 0 or num % s != 0:
        raise ValueError(
            f"{name} size {out_size} is not an output size of a transposed convolution with kernel_size={k}, "
            f"stride={s}, padding={p}, output_padding={op}, dilation={d}"
        )
    return num // s + 1


# ----------------------------------------------------------------------------------------------------------------------
# im2col helpers
# ----------------------------------------------------------------------------------------------------------------------
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
# Kernel computation
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

    Returns:
        ``(kernel, output_mask)``. ``output_mask`` is ``None`` unless ``mask`` is given; then it is 1 where the
        normaliser is non-zero (at least one valid neighbour) and 0 elsewhere. With a mask the kernel is zero on
        invalid taps and rescaled by the fraction of valid taps (or normalised to sum 1 with ``normalize_kernel``).

    Shape:
        - input: ``(B, F, H_f, W_f)``
        - mask: ``(B, 1, H_in, W_in)`` (``H_in = H_f`` unless ``transposed``)
        - kernel: ``(B, 1, kh, kw, H_out, W_out)``, or ``(B, F, kh, kw, H_out, W_out)`` when ``channel_wise``
        - output_mask: ``(B, 1 or F, H_out, W_out)``
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

    b, nf, h, w = input.shape
    device_type = input.device.type
    autocast = _autocast_on(device_type)
    # Squared feature distances overflow float16 quickly (E.13): compute in float32 for low-precision guidance.
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
        if native_impl:  # the reference: plain autograd on the unfolded guidance windows
            cols = F.unfold(f_pad, k, dilation=d, stride=k_stride).view(b, nf, k[0], k[1], out_h, out_w)
            diff = cols - ref[:, :, None, None]
            if spec.asym:
                diff = diff.clamp_min(0)
            dist2 = diff * diff if channel_wise else (diff * diff).sum(dim=1, keepdim=True)
        else:  # (B, 1 or F, kh, kw, H_out, W_out), without materialising the guidance windows for backward
            dist2 = _PacSquaredDistance.apply(f_pad, ref, k, k_stride, d, spec.asym, channel_wise, _use_unfold(f_pad))
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


# ----------------------------------------------------------------------------------------------------------------------
# The PAC correlation (memory-light autograd Function)
# ----------------------------------------------------------------------------------------------------------------------
def _tap_slices(
    u: int, w: int, dilation: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[slice, slice]:
    h0, w0 = u * dilation[0], w * dilation[1]
    return (
        slice(h0, h0 + stride[0] * (out_hw[0] - 1) + 1, stride[0]),
        slice(w0, w0 + stride[1] * (out_hw[1] - 1) + 1, stride[1]),
    )


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
                cols = g_diff.reshape(f.shape[0], f.shape[1] * kernel_size[0] * kernel_size[1], -1)
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


class _TapPlan(NamedTuple):
    """Which input samples each filter tap ``(u, w)`` multiplies, and which outputs it writes.

    The outputs are split into ``phases`` (strided sub-grids of the output; a plain convolution has one phase, the
    whole output). Tap ``(u, w)`` writes every output of its phase, reading the input window ``in_rows, in_cols``
    of the same size. A strided transposed convolution has ``stride**2`` phases, each tap writes one of them, and
    every tap reads the *original* input at stride 1: no zero-inserted grid, no multiplications by inserted zeros.
    """

    out_hw: tuple[int, int]
    phases: tuple[tuple[slice, slice], ...]
    phase_hw: tuple[tuple[int, int], ...]
    taps: tuple[tuple[int, int, int, slice, slice], ...]  # (u, w, phase, in_rows, in_cols), in (u, w) order

    @property
    def single_phase(self) -> bool:
        return len(self.phases) == 1

    def output_buffers(self, like: Tensor, channels: int) -> tuple[list[Tensor], list[Tensor]]:
        """Zeroed per-phase accumulators: 4-D bases ``(B, C, mh, mw)`` and their flat views ``(B, C, mh*mw)``.

        The single-phase base is the output itself: returning a view would forbid in-place ops (e.g.
        ``ReLU(inplace=True)``) on the output.
        """
        bases = [like.new_zeros(like.shape[0], channels, mh, mw) for mh, mw in self.phase_hw]
        return bases, [t.view(like.shape[0], channels, -1) for t in bases]

    def assemble(self, bases: list[Tensor], bias: Tensor | None) -> Tensor:
        """Interleaves the phase results into the output ``(B, C, H_out, W_out)`` and adds the bias."""
        if self.single_phase:
            out = bases[0]
        else:
            out = bases[0].new_empty(*bases[0].shape[:2], *self.out_hw)
            for (ry, rx), base in zip(self.phases, bases):
                out[:, :, ry, rx] = base
        if bias is not None:
            out.add_(bias.view(1, -1, 1, 1))
        return out

    def split(self, grad: Tensor) -> list[Tensor]:
        """The output gradient per phase, each contiguous ``(B, C, mh, mw)``."""
        return [grad] if self.single_phase else [grad[:, :, ry, rx].contiguous() for ry, rx in self.phases]


def _conv_plan(
    kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], out_hw: tuple[int, int]
) -> _TapPlan:
    whole = (slice(None), slice(None))
    taps = tuple(
        (u, v, 0, *_tap_slices(u, v, dilation, stride, out_hw))
        for u in range(kernel_size[0])
        for v in range(kernel_size[1])
    )
    return _TapPlan(out_hw, (whole,), (out_hw,), taps)


def _transposed_plan(
    in_hw: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> tuple[_TapPlan, tuple[int, int, int, int]]:
    """Polyphase plan of a transposed convolution; also returns the zero padding ``(left, right, top, bottom)``.

    On the zero-inserted grid padded by ``before = (k-1)*D - P``, output ``y`` of tap ``u`` reads the real sample
    ``i = (y + u*D - before) / S`` when that is an integer, i.e. for ``y = y0 + S*m`` with ``y0 = (before - u*D) mod
    S``, and then ``i = i0 + m``.
    """
    per_dim = []  # per spatial dim: for each tap index, (y0, i0, count); and the padding needed
    for n_in, k, s, p, d, n_out in zip(in_hw, kernel_size, stride, padding, dilation, out_hw):
        before = (k - 1) * d - p
        rows = []
        for u in range(k):
            y0 = (before - u * d) % s
            i0 = (y0 + u * d - before) // s
            count = len(range(y0, n_out, s))
            rows.append((y0, i0, count))
        lo = max([0] + [-i0 for _, i0, c in rows if c])
        hi = max([0] + [i0 + c - 1 - (n_in - 1) for _, i0, c in rows if c])
        per_dim.append((rows, lo, hi))
    (rows_h, top, bottom), (rows_w, left, right) = per_dim
    sh, sw = stride
    phases = tuple((slice(py, None, sh), slice(px, None, sw)) for py in range(sh) for px in range(sw))
    phase_hw = tuple(
        (len(range(py, out_hw[0], sh)), len(range(px, out_hw[1], sw))) for py in range(sh) for px in range(sw)
    )
    taps = []
    for u, (y0, i0, ch) in enumerate(rows_h):
        for v, (x0, j0, cw) in enumerate(rows_w):
            taps.append((u, v, y0 * sw + x0, slice(i0 + top, i0 + top + ch), slice(j0 + left, j0 + left + cw)))
    return _TapPlan(out_hw, phases, phase_hw, tuple(taps)), (left, right, top, bottom)


class _PacCorrelate(torch.autograd.Function):
    """``out[b,o,y,x] = sum_{c,u,w} W[o,c,u,w] K[b,0,u,w,y,x] x[b,c,rows_u(y),cols_w(x)]`` for a :class:`_TapPlan`.

    Loops over taps with strided slices; the backward recomputes each tap's product instead of saving an im2col.
    Taps that write the same outputs can be stacked in groups, one ``(C_out, n*C_in) x (n*C_in, HW)`` matrix product
    per group (:data:`_CORRELATE_GROUP_BYTES`; one tap per group measured fastest on 2 cores). ``shared`` means a
    depthwise ``(1, 1, kh, kw)`` filter used for every channel. ``weight`` is in correlation layout
    ``(C_out, C_in, kh, kw)``.
    """

    @staticmethod
    def _stack(x: Tensor, kernel: Tensor, plan: _TapPlan, group: list[int]) -> Tensor:
        """``K*x`` of the group's taps stacked along channels: ``(B, n*C_in, mh*mw)``."""
        b, c = x.shape[:2]
        ph = plan.taps[group[0]][2]
        ry, rx = plan.phases[ph]
        mh, mw = plan.phase_hw[ph]
        if torch.compiler.is_compiling() or torch.is_grad_enabled():  # Dynamo and double backward refuse out=
            return torch.cat(
                [
                    (x[:, :, sh, sw] * kernel[:, :, u, v, ry, rx]).reshape(b, c, -1)
                    for u, v, _, sh, sw in (plan.taps[i] for i in group)
                ],
                dim=1,
            )
        stacked = x.new_empty(b, len(group) * c, mh * mw)
        for j, i in enumerate(group):
            u, v, _, sh, sw = plan.taps[i]
            torch.mul(
                x[:, :, sh, sw], kernel[:, :, u, v, ry, rx], out=stacked[:, j * c : (j + 1) * c].view(b, c, mh, mw)
            )
        return stacked

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        kernel: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        plan: _TapPlan,
        shared: bool,
    ) -> Tensor:
        b, c = x.shape[:2]
        n_out = c if shared else weight.shape[0]
        bases, bufs = plan.output_buffers(x, n_out)
        if shared:
            for u, v, ph, sh, sw in plan.taps:
                if bufs[ph].shape[-1] == 0:
                    continue
                ry, rx = plan.phases[ph]
                bufs[ph].add_((x[:, :, sh, sw] * kernel[:, :, u, v, ry, rx]).reshape(b, c, -1) * weight[0, 0, u, v])
        else:
            max_hw = max(mh * mw for mh, mw in plan.phase_hw)
            for group in _tap_groups(plan, b * c * max_hw * x.element_size(), _CORRELATE_GROUP_BYTES):
                stacked = _PacCorrelate._stack(x, kernel, plan, group)
                w_group = torch.cat([weight[:, :, plan.taps[i][0], plan.taps[i][1]] for i in group], dim=1)
                bufs[plan.taps[group[0]][2]].baddbmm_(w_group.expand(b, -1, -1), stacked)
        out = plan.assemble(bases, bias)
        ctx.save_for_backward(x, kernel, weight)
        ctx.plan = plan
        ctx.geometry = (shared, bias is not None)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, kernel, weight = ctx.saved_tensors
        plan: _TapPlan = ctx.plan
        shared, has_bias = ctx.geometry
        need_x, need_k, need_w, need_b = ctx.needs_input_grad[:4]
        b, c = x.shape[:2]
        g = grad_out.contiguous()  # the gradient of a sum() arrives expanded (stride 0)
        n_out = g.shape[1]
        g_ph = plan.split(g)
        grad_x = torch.zeros_like(x) if need_x else None
        grad_k = torch.zeros_like(kernel) if need_k else None
        grad_w = torch.zeros_like(weight) if need_w else None
        max_hw = max(mh * mw for mh, mw in plan.phase_hw)
        for group in _tap_groups(plan, b * c * max_hw * x.element_size(), _CORRELATE_GROUP_BYTES):
            ph = plan.taps[group[0]][2]
            ry, rx = plan.phases[ph]
            mh, mw = plan.phase_hw[ph]
            g4 = g_ph[ph]
            g3 = g4.view(b, n_out, -1)
            uvs = [plan.taps[i][:2] for i in group]
            if need_x or need_k:
                # gradient w.r.t. each tap product K*x: W^T g
                if shared:
                    g_prods = [g4 * weight[0, 0, u, v] for u, v in uvs]
                else:
                    w_group = torch.cat([weight[:, :, u, v] for u, v in uvs], dim=1)  # (C_out, n*C_in)
                    g_all = torch.matmul(w_group.t(), g3)  # (B, n*C_in, HW)
                    g_prods = [g_all[:, j * c : (j + 1) * c].view(b, c, mh, mw) for j in range(len(group))]
                plain = not (torch.compiler.is_compiling() or torch.is_grad_enabled())  # out= is allowed
                tmp = x.new_empty(b, c, mh, mw) if (plain and need_k) else None
                for i, g_prod in zip(group, g_prods):
                    u, v, _, sh, sw = plan.taps[i]
                    kt = kernel[:, :, u, v, ry, rx]  # (B, 1, mh, mw)
                    if need_x:
                        grad_x[:, :, sh, sw].addcmul_(g_prod, kt)
                    if need_k:
                        if tmp is None:
                            grad_k[:, :, u, v, ry, rx] = (g_prod * x[:, :, sh, sw]).sum(dim=1, keepdim=True)
                        else:  # one reused buffer for the products: no fresh allocation per tap
                            torch.mul(g_prod, x[:, :, sh, sw], out=tmp)
                            torch.sum(tmp, dim=1, keepdim=True, out=grad_k[:, :, u, v, ry, rx])
            if need_w:
                if shared:
                    for u, v, _, sh, sw in (plan.taps[i] for i in group):
                        grad_w[0, 0, u, v] = (x[:, :, sh, sw] * kernel[:, :, u, v, ry, rx] * g4).sum()
                else:
                    stacked = _PacCorrelate._stack(x, kernel, plan, group)
                    gw_group = torch.bmm(g3, stacked.transpose(1, 2)).sum(dim=0)  # (C_out, n*C_in)
                    for j, (u, v) in enumerate(uvs):
                        grad_w[:, :, u, v] = gw_group[:, j * c : (j + 1) * c]
        gb = g.sum(dim=(0, 2, 3)) if (need_b and has_bias) else None
        return grad_x, grad_k, grad_w, gb, None, None


class _GuidePlan(NamedTuple):
    """Where each tap's guidance sample and each phase's reference (window centre) sit in the padded guidance."""

    pad: tuple[int, int, int, int]  # (left, right, top, bottom) zero padding of the guidance
    taps: tuple[tuple[slice, slice], ...]  # per tap, in the order of _TapPlan.taps
    centers: tuple[tuple[slice, slice], ...]  # per phase

    def padded(self, f: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The padded guidance and each phase's reference (window-centre) samples in it."""
        fp = F.pad(f, self.pad) if any(self.pad) else f
        return fp, [fp[:, :, ry, rx] for ry, rx in self.centers]

    def guidance_grad(self, grad_fp: Tensor, grad_refs: list[Tensor]) -> Tensor:
        """The gradient of :meth:`padded`: the references' gradients added at the centres, the padding cropped."""
        for (ry, rx), gr in zip(self.centers, grad_refs):
            grad_fp[:, :, ry, rx] += gr
        left, right, top, bottom = self.pad
        return grad_fp[:, :, top : grad_fp.shape[2] - bottom, left : grad_fp.shape[3] - right]


def _transposed_guide_plan(
    plan: _TapPlan, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> _GuidePlan:
    """The guidance is at the output size with "same" windows: tap ``(u, w)`` of output ``y`` reads ``f~[y + u*D]``."""
    ph, pw = ((k - 1) * d // 2 for k, d in zip(kernel_size, dilation))

    def rows(start: int, count: int, step: int) -> slice:
        return slice(start, start + step * (count - 1) + 1 if count else start, step)

    taps = []
    for u, v, phase, _, _ in plan.taps:
        (ry, rx), (mh, mw) = plan.phases[phase], plan.phase_hw[phase]
        taps.append((rows(ry.start + u * dilation[0], mh, stride[0]), rows(rx.start + v * dilation[1], mw, stride[1])))
    centers = tuple(
        (rows(ry.start + ph, mh, stride[0]), rows(rx.start + pw, mw, stride[1]))
        for (ry, rx), (mh, mw) in zip(plan.phases, plan.phase_hw)
    )
    return _GuidePlan((pw, pw, ph, ph), tuple(taps), centers)


_GROUP_BYTES = 4 * 2**20  # transient K*x buffer of one tap group of the channels-first fused form


# The tap loop with a precomputed kernel stacks no taps: on 2 cores one thin matrix product per tap measured as fast
# or faster (k5 B4 16 or 32 channels at 64x64, k3 B8 64 channels at 32x32; 4 MB groups were 5-10 % slower).
_CORRELATE_GROUP_BYTES = 0


def _conv_guide_plan(
    kernel_size: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int], out_hw: tuple[int, int]
) -> _GuidePlan:
    """A stride-1 convolution's guidance windows: those of its input (same padding), centred on the window centre."""
    taps = tuple(
        _tap_slices(u, v, dilation, (1, 1), out_hw) for u in range(kernel_size[0]) for v in range(kernel_size[1])
    )
    center = _tap_slices(kernel_size[0] // 2, kernel_size[1] // 2, dilation, (1, 1), out_hw)
    return _GuidePlan((padding[1], padding[1], padding[0], padding[0]), taps, (center,))


def _tap_groups(plan: _TapPlan, bytes_per_tap: int, budget: int) -> list[list[int]]:
    """Indices of taps that share an output phase, in groups whose stacked ``K*x`` fits ``budget`` bytes (at least
    one tap per group)."""
    cap = max(1, budget // max(bytes_per_tap, 1))
    by_phase: dict[int, list[int]] = {}
    for i, tap in enumerate(plan.taps):
        if plan.phase_hw[tap[2]][0] * plan.phase_hw[tap[2]][1]:
            by_phase.setdefault(tap[2], []).append(i)
    return [idx[j : j + cap] for idx in by_phase.values() for j in range(0, len(idx), cap)]


# ----------------------------------------------------------------------------------------------------------------------
# The rows form (the CPU default of stride-1 PacConv2d and of PacConvTranspose2d)
# ----------------------------------------------------------------------------------------------------------------------
_ROWS_TILE_BYTES = 512 * 2**10  # one tile's (rows x channels) block: about a core's L2 cache
_ROWS_MIN_TILE = 256  # rows; smaller tiles cost more in per-call overhead than they gain in cache
# Below these the rows form loses to the channels-first loops (measured: a 5x5 PAC-CRF message at dilation 8 on
# 64x64 images, 8 channels, padded rows 2.25x the outputs, ran 3x slower; 16-channel transposed layers were slower too)
_ROWS_MIN_CHANNELS = 32
_ROWS_MAX_WASTE = 1.5  # padded rows per output pixel (per phase)


class _RowsPlan(NamedTuple):
    """The zero-padded input as one ``(B*Hp*Wp, C)`` matrix of pixel rows (channels last), and where the taps read.

    Output ``(m_y, m_x)`` of a phase (the whole output of a convolution; one of the ``stride**2`` sub-grids of a
    transposed convolution, see :class:`_TapPlan`) of sample ``b`` lives in row ``b*Hp*Wp + m_y*Wp + m_x`` of that
    phase's output matrix, and its tap ``t`` reads the input row ``offset_t`` further down. So each tap's input is
    the same matrix shifted by a row offset: a plain 2-D view that a matrix product reads directly, no copy per tap.
    Rows with ``m_x >= mw`` or ``m_y >= mh`` are padding: their kernel entries and output gradients are zero, and
    they are dropped at the end; ``slack`` zero rows after the last sample keep the last taps' views in bounds.
    """

    batch: int
    in_hw: tuple[int, int]
    pad: tuple[int, int, int, int]  # (left, right, top, bottom) zero padding of the input
    padded_hw: tuple[int, int]
    out_hw: tuple[int, int]
    phases: tuple[tuple[slice, slice], ...]  # output sub-grid of each phase
    phase_hw: tuple[tuple[int, int], ...]
    taps: tuple[tuple[int, int, int, int], ...]  # (u, w, phase, row offset)

    @property
    def rows(self) -> int:
        return self.batch * self.padded_hw[0] * self.padded_hw[1]

    @property
    def slack(self) -> int:
        return max(t[3] for t in self.taps)

    def pixels(self, t: Tensor) -> Tensor:
        """A ``(rows [+ slack], C)`` matrix as ``(B, Hp, Wp, C)``."""
        return t[: self.rows].view(self.batch, *self.padded_hw, t.shape[-1])

    def inputs(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> the zero-padded rows ``(rows + slack, C)``."""
        (h, w), (left, _, top, _) = self.in_hw, self.pad
        xr = x.new_zeros(self.rows + self.slack, x.shape[1])
        self.pixels(xr)[:, top : top + h, left : left + w] = x.permute(0, 2, 3, 1)
        return xr

    def input_grad(self, gr: Tensor) -> Tensor:
        """The gradient of :meth:`inputs`: rows -> ``(B, C, H, W)``."""
        (h, w), (left, _, top, _) = self.in_hw, self.pad
        return self.pixels(gr)[:, top : top + h, left : left + w].permute(0, 3, 1, 2).contiguous()

    def outputs(self, phase_rows: list[Tensor]) -> Tensor:
        """Per-phase output rows ``(rows, O)`` -> ``(B, O, H_out, W_out)``."""
        crops = [self.pixels(r)[:, :mh, :mw].permute(0, 3, 1, 2) for r, (mh, mw) in zip(phase_rows, self.phase_hw)]
        if len(crops) == 1:
            return crops[0].contiguous()
        out = phase_rows[0].new_empty(self.batch, phase_rows[0].shape[1], *self.out_hw)
        for (ry, rx), crop in zip(self.phases, crops):
            out[:, :, ry, rx] = crop
        return out

    def output_grads(self, g: Tensor) -> list[Tensor]:
        """The output gradient ``(B, O, H_out, W_out)`` as per-phase rows ``(rows, O)``, zero on padding rows."""
        grads = []
        for (ry, rx), (mh, mw) in zip(self.phases, self.phase_hw):
            gr = g.new_zeros(self.rows, g.shape[1])
            self.pixels(gr)[:, :mh, :mw] = g[:, :, ry, rx].permute(0, 2, 3, 1)
            grads.append(gr)
        return grads

    def kernel_rows(self, kernel: Tensor) -> Tensor:
        """``(B, 1, kh, kw, H_out, W_out)`` -> ``(taps, rows, 1)``: each tap's entries on its phase, zero elsewhere."""
        kr = kernel.new_zeros(len(self.taps), self.batch, *self.padded_hw)
        for t, (u, v, ph, _) in enumerate(self.taps):
            (ry, rx), (mh, mw) = self.phases[ph], self.phase_hw[ph]
            kr[t, :, :mh, :mw] = kernel[:, 0, u, v, ry, rx]
        return kr.view(len(self.taps), self.rows, 1)

    def kernel_grad(self, gk: Tensor, like: Tensor) -> Tensor:
        """The gradient of :meth:`kernel_rows`: ``(taps, rows)`` -> the shape of ``like`` (entries no tap reads: 0)."""
        out = torch.zeros_like(like)
        gk = gk.view(len(self.taps), self.batch, *self.padded_hw)
        for t, (u, v, ph, _) in enumerate(self.taps):
            (ry, rx), (mh, mw) = self.phases[ph], self.phase_hw[ph]
            out[:, 0, u, v, ry, rx] = gk[t, :, :mh, :mw]
        return out

    def tiles(self, channels: int, like: Tensor) -> list[tuple[int, int]]:
        """Row ranges of about :data:`_ROWS_TILE_BYTES` per ``channels``-wide block of ``like``'s dtype (all rows
        at once while compiling, where tiles only make the graph longer)."""
        if torch.compiler.is_compiling():
            return [(0, self.rows)]
        step = max(_ROWS_MIN_TILE, _ROWS_TILE_BYTES // (channels * like.element_size()))
        return [(r, min(r + step, self.rows)) for r in range(0, self.rows, step)]

    def by_phase(self) -> list[tuple[int, list[int]]]:
        """``(phase, tap indices)`` for every phase with outputs."""
        taps: dict[int, list[int]] = {}
        for t, (_, _, ph, _) in enumerate(self.taps):
            if self.phase_hw[ph][0] * self.phase_hw[ph][1]:
                taps.setdefault(ph, []).append(t)
        return sorted(taps.items())


def _rows_worth_it(channels: int, plan: _RowsPlan) -> bool:
    """Whether the rows form pays on the CPU: matrix products wide enough (``channels``, the smaller of C_in and
    C_out) and few padding rows (those are computed and dropped)."""
    outputs = sum(plan.batch * mh * mw for mh, mw in plan.phase_hw)
    waste = plan.rows * len(plan.phases) / max(outputs, 1)
    return channels >= _ROWS_MIN_CHANNELS and waste <= _ROWS_MAX_WASTE


def _conv_rows_plan(
    input: Tensor, kernel_size: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]
) -> _RowsPlan:
    """Rows plan of a stride-1 convolution."""
    b, _, h, w = input.shape
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    out_hw = (hp - dilation[0] * (kernel_size[0] - 1), wp - dilation[1] * (kernel_size[1] - 1))
    taps = tuple(
        (u, v, 0, u * dilation[0] * wp + v * dilation[1]) for u in range(kernel_size[0]) for v in range(kernel_size[1])
    )
    pad = (padding[1], padding[1], padding[0], padding[0])
    return _RowsPlan(b, (h, w), pad, (hp, wp), out_hw, ((slice(None), slice(None)),), (out_hw,), taps)


def _transposed_rows_plan(
    input: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> tuple[_RowsPlan, _TapPlan]:
    """Rows plan of a transposed convolution (its polyphase :class:`_TapPlan`, on the original input), and that plan."""
    b, _, h, w = input.shape
    plan, pad = _transposed_plan((h, w), kernel_size, stride, padding, dilation, out_hw)
    hp, wp = h + pad[2] + pad[3], w + pad[0] + pad[1]
    taps = tuple((u, v, ph, sh.start * wp + sw.start) for u, v, ph, sh, sw in plan.taps)
    return _RowsPlan(b, (h, w), pad, (hp, wp), out_hw, plan.phases, plan.phase_hw, taps), plan


def _rows_weights(weight: Tensor, plan: _RowsPlan, shared: bool, for_input_grad: bool) -> Tensor:
    """Per-tap filters from a correlation-layout weight ``(O, C, kh, kw)``: ``(taps, C, O)`` for the forward product,
    ``(taps, O, C)`` for the input gradient, or ``(taps,)`` scalars for a shared depthwise filter."""
    u = torch.tensor([t[0] for t in plan.taps], device=weight.device)
    v = torch.tensor([t[1] for t in plan.taps], device=weight.device)
    if shared:
        return weight[0, 0, u, v]
    w_taps = weight[:, :, u, v].permute(2, 0, 1)  # (taps, O, C)
    return (w_taps if for_input_grad else w_taps.transpose(1, 2)).contiguous()


def _rows_forward(xr: Tensor, kr: Tensor, weight: Tensor, plan: _RowsPlan, shared: bool) -> list[Tensor]:
    """Per-phase output rows ``(rows, O)``: ``out[r] += (K_t[r] * x[r + offset_t]) @ W_t^T`` for each tap ``t``,
    tile by tile (all taps of a phase on one tile while it is in cache)."""
    c = xr.shape[1]
    w_taps = _rows_weights(weight, plan, shared, for_input_grad=False)
    o = c if shared else w_taps.shape[2]
    plain = not (torch.compiler.is_compiling() or torch.is_grad_enabled())  # out= is allowed
    tiles = plan.tiles(max(c, o), xr)
    buf = xr.new_empty(tiles[0][1] - tiles[0][0], c) if plain else None
    outs = [xr.new_zeros(plan.rows, o) for _ in plan.phases]
    for ph, taps in plan.by_phase():
        for r0, r1 in tiles:
            block = outs[ph][r0:r1]
            for t in taps:
                off = plan.taps[t][3]
                xt, kt = xr[r0 + off : r1 + off], kr[t, r0:r1]
                if shared:
                    block.addcmul_(xt, kt * w_taps[t])
                    continue
                prod = torch.mul(xt, kt, out=buf[: r1 - r0]) if plain else xt * kt
                block.addmm_(prod, w_taps[t])
    return outs


def _rows_backward(
    xr: Tensor,
    kr: Tensor,
    weight: Tensor,
    g_rows: list[Tensor],
    plan: _RowsPlan,
    shared: bool,
    needs: tuple[bool, bool, bool],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of :func:`_rows_forward`: input rows, kernel rows ``(taps, rows)`` and per-tap weights (the layout
    of :func:`_rows_weights` for the forward product, or ``(taps,)`` when shared)."""
    need_x, need_k, need_w = needs
    c = xr.shape[1]
    w_taps = _rows_weights(weight, plan, shared, for_input_grad=True)
    o = c if shared else w_taps.shape[1]
    grad_xr = torch.zeros_like(xr) if need_x else None
    grad_kr = kr.new_zeros(len(plan.taps), plan.rows) if need_k else None
    grad_w = None
    if need_w:  # the forward layout of _rows_weights: (taps, C, O), or (taps,) when shared
        grad_w = w_taps.new_zeros(w_taps.shape[0]) if shared else w_taps.new_zeros(w_taps.shape[0], c, o)
    # out= and reused buffers only when this backward is not itself differentiated
    plain = not (torch.compiler.is_compiling() or torch.is_grad_enabled())
    tiles = plan.tiles(max(c, o), xr)
    n = tiles[0][1] - tiles[0][0]
    g_in, prod, g_k = (xr.new_empty(n, c), xr.new_empty(n, c), xr.new_empty(n, o)) if plain else (None,) * 3
    for ph, taps in plan.by_phase():
        for r0, r1 in tiles:
            m, gt = r1 - r0, g_rows[ph][r0:r1]
            for t in taps:
                off = plan.taps[t][3]
                xt, kt = xr[r0 + off : r1 + off], kr[t, r0:r1]
                if need_x or need_k:  # the gradient of the tap product K_t * x_t: g @ W_t
                    if shared:
                        gi = gt * w_taps[t]
                    else:
                        gi = torch.mm(gt, w_taps[t], out=g_in[:m]) if plain else gt @ w_taps[t]
                    if need_x:
                        grad_xr[r0 + off : r1 + off].addcmul_(gi, kt)
                    if need_k:
                        if plain:
                            torch.sum(torch.mul(gi, xt, out=prod[:m]), dim=1, out=grad_kr[t, r0:r1])
                        else:
                            grad_kr[t, r0:r1] = (gi * xt).sum(dim=1)
                if need_w:  # W_t gets x_t^T @ (g * K_t)
                    gk = torch.mul(gt, kt, out=g_k[:m]) if plain else gt * kt
                    if shared:
                        grad_w[t] += (gk * xt).sum()
                    else:
                        grad_w[t].addmm_(xt.t(), gk)
    return grad_xr, grad_kr, grad_w


def _rows_weight_grad(grad_taps: Tensor, weight: Tensor, plan: _RowsPlan, shared: bool) -> Tensor:
    """Scatters per-tap weight gradients (the :func:`_rows_weights` forward layout) into the weight's shape."""
    out = torch.zeros_like(weight)
    for t, (u, v, _, _) in enumerate(plan.taps):
        if shared:
            out[0, 0, u, v] = grad_taps[t]
        else:
            out[:, :, u, v] = grad_taps[t].t()
    return out


class _PacRowsCorrelate(torch.autograd.Function):
    """PAC correlation in the rows layout (:class:`_RowsPlan`) with a given kernel: stride-1 convolutions and
    (polyphase) transposed ones.

    One thin matrix product per tap and tile, on channels-last rows: on 2 cores MKL ran these about 3x faster than
    the same product with channels first (the tap loop's layout), and a tile of rows stays in cache while every tap
    of its phase reads it. Saves only ``x``, ``kernel`` and ``weight``; backward rebuilds the rows and recomputes
    the products tile by tile. ``weight`` is in correlation layout.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        kernel: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        plan: _RowsPlan,
        shared: bool,
    ) -> Tensor:
        y = plan.outputs(_rows_forward(plan.inputs(x), plan.kernel_rows(kernel), weight, plan, shared))
        if bias is not None:
            y.add_(bias.view(1, -1, 1, 1))
        ctx.save_for_backward(x, kernel, weight)
        ctx.plan = plan
        ctx.geometry = (shared, bias is not None)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, kernel, weight = ctx.saved_tensors
        plan: _RowsPlan = ctx.plan
        shared, has_bias = ctx.geometry
        need_x, need_k, need_w, need_b = ctx.needs_input_grad[:4]
        grad_x = grad_k = grad_w = gb = None
        if need_x or need_k or need_w:
            xr, kr, g_rows = plan.inputs(x), plan.kernel_rows(kernel), plan.output_grads(grad_out)
            grad_xr, grad_kr, grad_wt = _rows_backward(xr, kr, weight, g_rows, plan, shared, (need_x, need_k, need_w))
            grad_x = plan.input_grad(grad_xr) if need_x else None
            grad_k = plan.kernel_grad(grad_kr, kernel) if need_k else None
            grad_w = _rows_weight_grad(grad_wt, weight, plan, shared) if need_w else None
        if need_b and has_bias:
            gb = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_k, grad_w, gb, None, None


class _PacGaussianCorrelate(torch.autograd.Function):
    """PAC with the Gaussian kernel fused in: ``K = exp(-0.5 |f_j - f_i|^2)`` is computed per tap from the guidance
    and never saved.

    The fast path of stride-1 ``PacConv2d`` and of ``PacConvTranspose2d`` for the common configuration (Gaussian
    kernel, no smoothing, no normalisation, no mask). Only the caller's ``x``, ``f`` and ``weight`` are saved for
    backward (padding happens inside), so the layer keeps nothing beyond its inputs alive; backward recomputes the
    kernel. Only the kernel entries that meet real input samples are computed (a quarter of them for a stride-2
    transposed layer); the correlation itself runs in the rows form (:func:`_rows_forward`).
    """

    @staticmethod
    def _kernel_rows(fp: Tensor, refs: list[Tensor], rplan: _RowsPlan, gplan: _GuidePlan, dtype: torch.dtype) -> Tensor:
        """Kernel rows ``(taps, B, Hp, Wp)``, zero off each tap's phase."""
        kr = fp.new_zeros(len(rplan.taps), rplan.batch, *rplan.padded_hw, dtype=dtype)
        for t, (_, _, ph, _) in enumerate(rplan.taps):
            mh, mw = rplan.phase_hw[ph]
            if mh * mw:
                diff = fp[:, :, gplan.taps[t][0], gplan.taps[t][1]] - refs[ph]
                kr[t, :, :mh, :mw] = torch.exp(-0.5 * (diff * diff).sum(dim=1))
        return kr

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        f: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        rplan: _RowsPlan,
        gplan: _GuidePlan,
        shared: bool,
    ) -> Tensor:
        fp, refs = gplan.padded(f)
        kr = _PacGaussianCorrelate._kernel_rows(fp, refs, rplan, gplan, x.dtype)
        y = rplan.outputs(
            _rows_forward(rplan.inputs(x), kr.view(len(rplan.taps), rplan.rows, 1), weight, rplan, shared)
        )
        if bias is not None:
            y.add_(bias.view(1, -1, 1, 1))
        ctx.save_for_backward(x, f, weight)
        ctx.plans = (rplan, gplan)
        ctx.geometry = (shared, bias is not None)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, f, weight = ctx.saved_tensors
        rplan, gplan = ctx.plans
        shared, has_bias = ctx.geometry
        need_x, need_f, need_w, need_b = ctx.needs_input_grad[:4]
        grad_x = grad_f = grad_w = gb = None
        if need_x or need_f or need_w:
            fp, refs = gplan.padded(f)
            kr = _PacGaussianCorrelate._kernel_rows(fp, refs, rplan, gplan, x.dtype)
            taps = len(rplan.taps)
            grad_xr, grad_kr, grad_wt = _rows_backward(
                rplan.inputs(x),
                kr.view(taps, rplan.rows, 1),
                weight,
                rplan.output_grads(grad_out),
                rplan,
                shared,
                (need_x, need_f, need_w),
            )
            grad_x = rplan.input_grad(grad_xr) if need_x else None
            grad_w = _rows_weight_grad(grad_wt, weight, rplan, shared) if need_w else None
            if need_f:  # dK/d(f_j - f_i) = -K (f_j - f_i); the reference f_i gets minus what f_j gets
                grad_fp = torch.zeros_like(fp)
                grad_refs = [torch.zeros_like(r) for r in refs]
                grad_kr = grad_kr.view(taps, rplan.batch, *rplan.padded_hw)
                for t, (_, _, ph, _) in enumerate(rplan.taps):
                    mh, mw = rplan.phase_hw[ph]
                    if not mh * mw:
                        continue
                    gy, gx = gplan.taps[t]
                    diff = fp[:, :, gy, gx] - refs[ph]
                    g_diff = -((grad_kr[t, :, :mh, :mw] * kr[t, :, :mh, :mw]).unsqueeze(1).to(f.dtype)) * diff
                    grad_fp[:, :, gy, gx] += g_diff
                    grad_refs[ph] -= g_diff
                grad_f = gplan.guidance_grad(grad_fp, grad_refs)
        if need_b and has_bias:
            gb = grad_out.sum(dim=(0, 2, 3))
        return grad_x, grad_f, grad_w, gb, None, None, None


class _PacGaussianCorrelateTaps(torch.autograd.Function):
    """The fused Gaussian PAC of :class:`_PacGaussianCorrelate` with channels first and taps stacked per phase: the
    CPU form for transposed layers too narrow for the rows form (:func:`_rows_worth_it`).

    The fast path of ``PacConvTranspose2d`` for the common configuration (Gaussian kernel, no smoothing, no
    normalisation, no mask). Only the caller's ``x``, ``f`` and ``weight`` are saved for backward (padding happens
    inside), so the layer keeps nothing beyond its inputs alive; backward recomputes the taps. Only the kernel
    entries that meet real input samples are computed (a quarter of them for a stride-2 transposed layer). Taps that
    write the same outputs are stacked into one ``(C_out, n*C_in) x (n*C_in, HW)`` matrix product (bounded
    transient buffer).
    """

    @staticmethod
    def _taps(
        xp: Tensor, fp: Tensor, refs: list[Tensor], plan: _TapPlan, gplan: _GuidePlan, i: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(x window, kernel K, guidance difference) of tap ``i``: shapes (B,C,h,w), (B,1,h,w), (B,F,h,w)."""
        u, v, ph, sh, sw = plan.taps[i]
        gy, gx = gplan.taps[i]
        diff = fp[:, :, gy, gx] - refs[ph]
        kt = torch.exp(-0.5 * (diff * diff).sum(dim=1, keepdim=True)).to(xp.dtype)
        return xp[:, :, sh, sw], kt, diff

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        f: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        plan: _TapPlan,
        x_pad: tuple[int, int, int, int],
        gplan: _GuidePlan,
        shared: bool,
    ) -> Tensor:
        xp = F.pad(x, x_pad) if any(x_pad) else x
        fp, refs = gplan.padded(f)
        b, c = x.shape[:2]
        n_out = c if shared else weight.shape[0]
        bases, bufs = plan.output_buffers(x, n_out)
        max_hw = max(mh * mw for mh, mw in plan.phase_hw)
        for group in _tap_groups(plan, b * c * max_hw * x.element_size(), _GROUP_BYTES):
            ph = plan.taps[group[0]][2]
            mh, mw = plan.phase_hw[ph]
            if shared:
                for i in group:
                    xs, kt, _ = _PacGaussianCorrelateTaps._taps(xp, fp, refs, plan, gplan, i)
                    u, v = plan.taps[i][:2]
                    bufs[ph].add_((xs * kt).reshape(b, c, -1) * weight[0, 0, u, v])
                continue
            if torch.compiler.is_compiling():  # Dynamo refuses out= into a strided view
                parts = [_PacGaussianCorrelateTaps._taps(xp, fp, refs, plan, gplan, i) for i in group]
                stacked = torch.cat([(xs * kt).reshape(b, c, -1) for xs, kt, _ in parts], dim=1)
            else:  # write each product straight into the stacked buffer (no extra copy)
                stacked = x.new_empty(b, len(group) * c, mh * mw)
                for j, i in enumerate(group):
                    xs, kt, _ = _PacGaussianCorrelateTaps._taps(xp, fp, refs, plan, gplan, i)
                    torch.mul(xs, kt, out=stacked[:, j * c : (j + 1) * c].view(b, c, mh, mw))
            w_group = torch.cat([weight[:, :, plan.taps[i][0], plan.taps[i][1]] for i in group], dim=1)
            bufs[ph].baddbmm_(w_group.expand(b, -1, -1), stacked)
        out = plan.assemble(bases, bias)
        ctx.save_for_backward(x, f, weight)
        ctx.plans = (plan, x_pad, gplan)
        ctx.geometry = (shared, bias is not None)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, f, weight = ctx.saved_tensors
        plan, x_pad, gplan = ctx.plans
        shared, has_bias = ctx.geometry
        need_x, need_f, need_w, need_b = ctx.needs_input_grad[:4]
        xp = F.pad(x, x_pad) if any(x_pad) else x
        fp, refs = gplan.padded(f)
        b, c = x.shape[:2]
        g = grad_out.contiguous()
        n_out = g.shape[1]
        g_ph = plan.split(g)
        grad_xp = torch.zeros_like(xp) if need_x else None
        grad_fp = torch.zeros_like(fp) if need_f else None
        grad_refs = [torch.zeros_like(r) for r in refs] if need_f else None
        grad_w = torch.zeros_like(weight) if need_w else None
        max_hw = max(mh * mw for mh, mw in plan.phase_hw)
        for group in _tap_groups(plan, b * c * max_hw * x.element_size(), _GROUP_BYTES):
            ph = plan.taps[group[0]][2]
            mh, mw = plan.phase_hw[ph]
            g4 = g_ph[ph]
            g3 = g4.view(b, n_out, -1)
            taps = [_PacGaussianCorrelateTaps._taps(xp, fp, refs, plan, gplan, i) for i in group]
            uvs = [plan.taps[i][:2] for i in group]
            if need_x or need_f:
                if shared:
                    g_prods = [g4 * weight[0, 0, u, v] for u, v in uvs]
                else:
                    w_group = torch.cat([weight[:, :, u, v] for u, v in uvs], dim=1)  # (C_out, n*C_in)
                    g_all = torch.matmul(w_group.t(), g3)  # (B, n*C_in, HW): W^T g for every tap of the group
                    g_prods = [g_all[:, j * c : (j + 1) * c].view(b, c, mh, mw) for j in range(len(group))]
                for i, (xs, kt, diff), g_prod in zip(group, taps, g_prods):
                    _, _, _, sh, sw = plan.taps[i]
                    if need_x:
                        grad_xp[:, :, sh, sw] += g_prod * kt
                    if need_f:  # dK/d(f_j - f_i) = -K (f_j - f_i)
                        gy, gx = gplan.taps[i]
                        g_diff = -((g_prod * xs).sum(dim=1, keepdim=True) * kt).to(diff.dtype) * diff
                        grad_fp[:, :, gy, gx] += g_diff
                        grad_refs[ph] -= g_diff
            if need_w:
                if shared:
                    for (u, v), (xs, kt, _) in zip(uvs, taps):
                        grad_w[0, 0, u, v] = (xs * kt * g4).sum()
                else:
                    stacked = torch.cat([(xs * kt).reshape(b, c, -1) for xs, kt, _ in taps], dim=1)
                    gw_group = torch.bmm(g3, stacked.transpose(1, 2)).sum(dim=0)  # (C_out, n*C_in)
                    for j, (u, v) in enumerate(uvs):
                        grad_w[:, :, u, v] = gw_group[:, j * c : (j + 1) * c]
        grad_x = grad_f = None
        if need_x:
            left, right, top, bottom = x_pad
            grad_x = grad_xp[:, :, top : grad_xp.shape[2] - bottom, left : grad_xp.shape[3] - right]
        if need_f:
            grad_f = gplan.guidance_grad(grad_fp, grad_refs)
        gb = g.sum(dim=(0, 2, 3)) if (need_b and has_bias) else None
        return grad_x, grad_f, grad_w, gb, None, None, None, None


_UNFOLD_BYTES = 256 * 2**20  # im2col of one batch chunk on the unfold path (CUDA)


def _batch_chunks(per_sample_bytes: int, batch: int) -> list[slice]:
    """Batch slices whose im2col stays within :data:`_UNFOLD_BYTES` (at least one sample each)."""
    step = max(1, min(batch, _UNFOLD_BYTES // max(per_sample_bytes, 1)))
    return [slice(i, min(i + step, batch)) for i in range(0, batch, step)]


class _PacUnfoldCorrelate(torch.autograd.Function):
    """The PAC correlation as im2col + one matrix product per batch chunk, recomputed in backward.

    The same answer as :class:`_PacCorrelate` with a handful of large kernels instead of several per tap (the CUDA
    form: a GPU is launch-bound on the tap loop at common sizes). Only ``x``, ``kernel`` and ``weight`` are saved;
    the im2col exists one batch chunk at a time (:data:`_UNFOLD_BYTES`). ``x`` is already padded (zero-inserted
    for transposed layers); ``weight`` is in correlation layout.
    """

    @staticmethod
    def _cols(x: Tensor, kernel: Tensor, stride: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
        b, c = x.shape[:2]
        kh, kw = kernel.shape[2:4]
        return F.unfold(x, (kh, kw), dilation=dilation, stride=stride).view(b, c, kh * kw, -1)

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        kernel: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: tuple[int, int],
        dilation: tuple[int, int],
        shared: bool,
    ) -> Tensor:
        b, c = x.shape[:2]
        kh, kw, out_h, out_w = kernel.shape[2:]
        taps, n = kh * kw, out_h * out_w
        n_out = c if shared else weight.shape[0]
        w2 = weight.reshape(1, 1, taps, 1) if shared else weight.reshape(n_out, c * taps)
        outs = []
        for sl in _batch_chunks(c * taps * n * x.element_size(), b):
            cols = _PacUnfoldCorrelate._cols(x[sl], kernel, stride, dilation)
            cols.mul_(kernel[sl].reshape(-1, 1, taps, n))
            outs.append((cols * w2).sum(dim=2) if shared else torch.matmul(w2, cols.view(-1, c * taps, n)))
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        if bias is not None:
            out.add_(bias.view(1, -1, 1))
        ctx.save_for_backward(x, kernel, weight)
        ctx.geometry = (stride, dilation, shared, bias is not None)
        return out.view(b, n_out, out_h, out_w)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, kernel, weight = ctx.saved_tensors
        stride, dilation, shared, has_bias = ctx.geometry
        need_x, need_k, need_w, need_b = ctx.needs_input_grad[:4]
        b, c = x.shape[:2]
        kh, kw, out_h, out_w = kernel.shape[2:]
        taps, n = kh * kw, out_h * out_w
        g = grad_out.reshape(b, -1, n)
        n_out = g.shape[1]
        w2 = weight.reshape(1, 1, taps, 1) if shared else weight.reshape(n_out, c * taps)
        grad_x, grad_k, grad_w = [], [], []
        for sl in _batch_chunks(c * taps * n * x.element_size(), b):
            cols = _PacUnfoldCorrelate._cols(x[sl], kernel, stride, dilation)  # (b, C, T, N)
            k = kernel[sl].reshape(-1, 1, taps, n)
            gs = g[sl]
            if need_w:
                prod = cols * k
                if shared:
                    grad_w.append((prod * gs[:, :, None]).sum(dim=(0, 1, 3)))
                else:
                    grad_w.append(torch.matmul(gs, prod.view(-1, c * taps, n).transpose(1, 2)).sum(dim=0))
            if need_x or need_k:
                if shared:
                    g_cols = gs[:, :, None] * w2  # (b, C, T, N)
                else:
                    g_cols = torch.matmul(w2.t(), gs).view(-1, c, taps, n)
                if need_k:
                    grad_k.append((g_cols * cols).sum(dim=1, keepdim=True))
                if need_x:
                    grad_x.append(
                        F.fold(
                            (g_cols * k).view(-1, c * taps, n), x.shape[-2:], (kh, kw), dilation=dilation, stride=stride
                        )
                    )
        gx = torch.cat(grad_x) if need_x else None
        gk = torch.cat(grad_k).view_as(kernel) if need_k else None
        gw = torch.stack(grad_w).sum(dim=0).view_as(weight) if need_w else None
        gb = g.sum(dim=(0, 2)) if (need_b and has_bias) else None
        return gx, gk, gw, gb, None, None, None


def _transposed_cols_bytes(input: Tensor, kernel_size: tuple[int, int], out_hw: tuple[int, int]) -> int:
    """Size of the im2col of a transposed layer's zero-inserted input (what its unfold form would build)."""
    b, c = input.shape[:2]
    return b * c * kernel_size[0] * kernel_size[1] * out_hw[0] * out_hw[1] * input.element_size()


def _use_unfold(x: Tensor, transposed_cols_bytes: int | None = None) -> bool:
    """Whether the unfold (im2col) forms run: on CUDA, where the tap loop is launch-bound (on an H200 the unfold-based
    reference ran 3-4x faster than the tap loop at the benchmark's small shapes and on par at B=16, 128x128). A
    strided transposed layer unfolds its zero-inserted input, ``S**2`` times more work, so it takes the unfold form
    only while that im2col is small (``transposed_cols_bytes``)."""
    if not x.is_cuda:
        return False
    return transposed_cols_bytes is None or transposed_cols_bytes <= 64 * 2**20


def _use_rows(x: Tensor, stride: tuple[int, int]) -> bool:
    """Whether a correlation runs the rows form (:class:`_PacRowsCorrelate`): where the unfold form does not (the
    CPU), for a stride-1 read of the input. A strided ``PacConv2d`` keeps the tap loop (the rows form would compute
    every stride-1 output); transposed layers ask with stride 1 (their polyphase plan reads the input at stride 1).
    The tap loop stays reachable for comparisons by patching this function."""
    return not _use_unfold(x) and stride == (1, 1)


def _check_pac_inputs(
    input: Tensor, kernel: Tensor, weight: Tensor, bias: Tensor | None, shared_filters: bool, transposed: bool
) -> tuple[int, int, int]:
    """Validates the functional arguments; returns ``(out_channels, kh, kw)``."""
    _check_tensor(input, "input", 4, "(B, C, H, W)")
    _check_tensor(kernel, "kernel", 6, "(B, 1, kh, kw, H_out, W_out)")
    w_doc = "(1, 1, kh, kw)" if shared_filters else ("(C_in, C_out, kh, kw)" if transposed else "(C_out, C_in, kh, kw)")
    _check_tensor(weight, "weight", 4, w_doc)
    for name, t in (("input", input), ("kernel", kernel), ("weight", weight)):
        _check_float(t, name)
    c = input.shape[1]
    kh, kw = weight.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"weight must have an odd kernel size, got {(kh, kw)}")
    if shared_filters:
        if weight.shape[:2] != (1, 1):
            raise ValueError(
                f"weight must have shape (1, 1, kh, kw) with shared_filters=True, got {tuple(weight.shape)}"
            )
        out_channels = c
    else:
        w_in = weight.shape[0] if transposed else weight.shape[1]
        if w_in != c:
            raise ValueError(
                f"weight {w_doc} expects C_in={w_in} input channels, but input has shape {tuple(input.shape)}"
            )
        out_channels = weight.shape[1] if transposed else weight.shape[0]
    if bias is not None:
        _check_tensor(bias, "bias", 1, f"({out_channels},)")
        if bias.shape[0] != out_channels:
            raise ValueError(f"bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    if kernel.shape[1] != 1:
        raise ValueError(
            f"kernel must have a single channel, shape (B, 1, kh, kw, H_out, W_out); channel_wise kernels are only "
            f"for pooling, got shape {tuple(kernel.shape)}"
        )
    _check_same_dtype((("input", input), ("kernel", kernel), ("weight", weight), ("bias", bias)), input.device.type)
    return out_channels, kh, kw


def _reference_correlate(
    x: Tensor,
    kernel: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    shared: bool,
) -> Tensor:
    """The obviously correct PAC (``native_impl=True``): unfold, multiply by ``K``, contract; plain autograd.

    ``x`` is already padded (zero-inserted for transposed layers); ``weight`` is in correlation layout. Autograd
    keeps the im2col of ``x``: use it to check the fast paths, not to train large models.
    """
    b, c = x.shape[:2]
    kh, kw, out_h, out_w = kernel.shape[2:]
    cols = F.unfold(x, (kh, kw), dilation=dilation, stride=stride).view(b, c, kh, kw, out_h, out_w)
    if shared:
        out = torch.einsum("bcuvyx,uv->bcyx", cols * kernel, weight[0, 0])
    else:
        out = torch.einsum("bcuvyx,ocuv->boyx", cols * kernel, weight)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _run_correlate(
    x: Tensor,
    kernel: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    plan: _TapPlan,
    shared: bool,
    reference: tuple[tuple[int, int], tuple[int, int]] | None = None,
    unfold: tuple[tuple[int, int], tuple[int, int]] | None = None,
    rows: _RowsPlan | None = None,
) -> Tensor:
    """Runs the tap-loop correlation, the reference (``reference=(stride, dilation)``) or the unfold form
    (``unfold=(stride, dilation)``) on the same (padded) ``x``, or the rows form (``rows``) on the unpadded ``x``."""
    device_type = x.device.type
    autocast = _autocast_on(device_type)
    if autocast:  # follow the autocast policy of convolutions: run in the low-precision dtype
        dtype = torch.get_autocast_dtype(device_type)
        x, kernel, weight = x.to(dtype), kernel.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    if reference is not None:
        return _reference_correlate(x, kernel, weight, bias, *reference, shared)
    with torch.autocast(device_type, enabled=False) if autocast else _NullContext():
        if rows is not None:
            return _PacRowsCorrelate.apply(x, kernel, weight, bias, rows, shared)
        if unfold is not None:
            return _PacUnfoldCorrelate.apply(x, kernel, weight, bias, *unfold, shared)
        return _PacCorrelate.apply(x, kernel, weight, bias, plan, shared)


def pacconv2d(
    input: Tensor,
    kernel: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    shared_filters: bool = False,
    native_impl: bool | None = None,
) -> Tensor:
    """Pixel-adaptive convolution (Eq. 3): ``v'_i = sum_j K(f_i, f_j) W[p_i - p_j] v_j + b``.

    Index form: ``out[b,o,y,x] = bias[o] + sum_{c,u,w} W[o,c,u,w] K[b,0,u,w,y,x] v~[b,c,y*S+u*D,x*S+w*D]`` with
    ``v~`` the zero-padded input. With ``K == 1`` this is ``F.conv2d``.

    Args:
        input: Input ``v``.
        kernel: Adaptive kernel from :func:`packernel2d` (same stride, padding and dilation).
        weight: Filter ``W``; ``(1, 1, kh, kw)`` with ``shared_filters`` (one depthwise filter for all channels).
        bias: Optional bias.
        stride: Stride.
        padding: Zero padding.
        dilation: Dilation.
        shared_filters: Apply the single filter depthwise (output channel c uses input channel c only).
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``, as the official
            native path); ``False``/``None`` the fast one.

    Shape:
        - input: ``(B, C_in, H, W)``
        - kernel: ``(B, 1, kh, kw, H_out, W_out)``
        - weight: ``(C_out, C_in, kh, kw)`` or ``(1, 1, kh, kw)``
        - output: ``(B, C_out, H_out, W_out)`` with ``H_out = floor((H + 2P - D(kh-1) - 1) / S) + 1``
    """
    out_channels, kh, kw = _check_pac_inputs(input, kernel, weight, bias, shared_filters, transposed=False)
    s, p, d = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    _check_geometry((kh, kw), s, p, d)
    b, _, h, w = input.shape
    out_hw = tuple(_conv_out(n, ki, si, pi, di) for n, ki, si, pi, di in zip((h, w), (kh, kw), s, p, d))
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise ValueError(
            f"input of spatial size {(h, w)} is too small for kernel_size={(kh, kw)}, padding={p}, dilation={d}"
        )
    expected = (b, 1, kh, kw) + out_hw
    if tuple(kernel.shape) != expected:
        raise ValueError(f"kernel must have shape (B, 1, kh, kw, H_out, W_out) = {expected}, got {tuple(kernel.shape)}")
    if not native_impl and _use_rows(input, s):
        rplan = _conv_rows_plan(input, (kh, kw), p, d)
        if _rows_worth_it(min(input.shape[1], out_channels), rplan):
            return _run_correlate(input, kernel, weight, bias, None, shared_filters, rows=rplan)  # type: ignore[arg-type]
    x = F.pad(input, (p[1], p[1], p[0], p[0])) if (p[0] or p[1]) else input
    reference = (s, d) if native_impl else None
    unfold = (s, d) if (not native_impl and _use_unfold(x)) else None
    plan = _conv_plan((kh, kw), s, d, out_hw)
    return _run_correlate(x, kernel, weight, bias, plan, shared_filters, reference, unfold)


def pacconv_transpose2d(
    input: Tensor,
    kernel: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    shared_filters: bool = False,
    native_impl: bool | None = None,
) -> Tensor:
    """Transposed pixel-adaptive convolution; with ``K == 1`` it equals ``F.conv_transpose2d`` (same ``weight``).

    The input is spread ``stride`` apart by zero insertion, padded by ``(k-1)*D - P`` on the top/left and that plus
    ``output_padding`` on the bottom/right, and correlated (stride 1, dilation ``D``) with the spatially flipped
    weight, each tap scaled by ``K`` (Eq. 3). Weights of the official layer need
    :func:`official_transposed_weight_to_torch` first.

    Args:
        input: Input ``v``.
        kernel: Adaptive kernel from :func:`packernel2d` with ``transposed=True`` (guidance at output size).
        weight: Filter in the ``nn.ConvTranspose2d`` layout; ``(1, 1, kh, kw)`` with ``shared_filters``.
        bias: Optional bias.
        stride: Up-sampling stride.
        padding: Padding, as in ``nn.ConvTranspose2d``.
        output_padding: Extra size on the bottom/right, as in ``nn.ConvTranspose2d``.
        dilation: Dilation.
        shared_filters: Apply the single filter depthwise (output channel c uses input channel c only).
        native_impl: ``True`` runs the reference implementation (plain autograd on ``F.unfold``, as the official
            native path); ``False``/``None`` the fast one.

    Shape:
        - input: ``(B, C_in, H, W)``
        - kernel: ``(B, 1, kh, kw, H_out, W_out)``
        - weight: ``(C_in, C_out, kh, kw)`` or ``(1, 1, kh, kw)``
        - output: ``(B, C_out, H_out, W_out)`` with ``H_out = (H - 1) S - 2P + D(kh-1) + output_padding + 1``
    """
    out_channels, kh, kw = _check_pac_inputs(input, kernel, weight, bias, shared_filters, transposed=True)
    s, p, op, d = (
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(output_padding, "output_padding"),
        _pair(dilation, "dilation"),
    )
    _check_geometry((kh, kw), s, p, d)
    _check_output_padding(op, s, d)
    b, _, h, w = input.shape
    out_hw = tuple(
        _conv_transpose_out(n, ki, si, pi, oi, di) for n, ki, si, pi, oi, di in zip((h, w), (kh, kw), s, p, op, d)
    )
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise ValueError(f"output size {out_hw} is not positive for input size {(h, w)} and padding={p}")
    expected = (b, 1, kh, kw) + out_hw
    if tuple(kernel.shape) != expected:
        raise ValueError(f"kernel must have shape (B, 1, kh, kw, H_out, W_out) = {expected}, got {tuple(kernel.shape)}")
    w_corr = weight.flip(-2, -1) if shared_filters else weight.transpose(0, 1).flip(-2, -1)
    # The reference and the unfold form correlate the zero-inserted, padded input with stride 1.
    if native_impl or _use_unfold(input, _transposed_cols_bytes(input, (kh, kw), out_hw)):
        before = tuple((ki - 1) * di - pi for ki, di, pi in zip((kh, kw), d, p))
        after = tuple(bi + oi for bi, oi in zip(before, op))
        x = _zero_insert_pad(input, s, before, after)
        geometry = ((1, 1), d)
        return _run_correlate(
            x,
            kernel,
            w_corr,
            bias,
            _conv_plan((kh, kw), (1, 1), d, out_hw),
            shared_filters,
            reference=geometry if native_impl else None,
            unfold=None if native_impl else geometry,
        )
    rplan, plan = _transposed_rows_plan(input, (kh, kw), s, p, d, out_hw)
    # the polyphase plan reads the input at stride 1
    if _use_rows(input, (1, 1)) and _rows_worth_it(min(input.shape[1], out_channels), rplan):
        return _run_correlate(input, kernel, w_corr, bias, None, shared_filters, rows=rplan)  # type: ignore[arg-type]
    x = F.pad(input, rplan.pad) if any(rplan.pad) else input
    return _run_correlate(x, kernel, w_corr, bias, plan, shared_filters)


def pacpool2d(
    input: Tensor,
    kernel: Tensor,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    native_impl: bool | None = None,
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

    Shape:
        - input: ``(B, C, H, W)``
        - kernel: ``(B, 1, kh, kw, H_out, W_out)`` or ``(B, C, kh, kw, H_out, W_out)``
        - output: ``(B, C, H_out, W_out)`` with ``H_out = floor((H + 2P - D(kh-1) - 1) / S) + 1``
    """
    _check_tensor(input, "input", 4, "(B, C, H, W)")
    _check_tensor(kernel, "kernel", 6, "(B, 1 or C, kh, kw, H_out, W_out)")
    _check_float(input, "input")
    _check_float(kernel, "kernel")
    k, s, p, d = (
        _pair(kernel_size, "kernel_size"),
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
    )
    _check_geometry(k, s, p, d)
    b, c, h, w = input.shape
    out_hw = tuple(_conv_out(n, ki, si, pi, di) for n, ki, si, pi, di in zip((h, w), k, s, p, d))
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise ValueError(f"input of spatial size {(h, w)} is too small for kernel_size={k}, padding={p}, dilation={d}")
    if kernel.shape[1] not in (1, c):
        raise ValueError(
            f"a channel-wise kernel needs as many channels as the input (F == C): kernel has {kernel.shape[1]}, "
            f"input has shape {tuple(input.shape)}"
        )
    expected = (b, kernel.shape[1]) + k + out_hw
    if tuple(kernel.shape) != expected:
        raise ValueError(
            f"kernel must have shape (B, 1 or C, kh, kw, H_out, W_out) = {expected}, got {tuple(kernel.shape)}"
        )
    device_type = input.device.type
    _check_same_dtype((("input", input), ("kernel", kernel)), device_type)
    if _autocast_on(device_type):  # same policy as the convolutions: run in the low-precision dtype
        dtype = torch.get_autocast_dtype(device_type)
        input, kernel = input.to(dtype), kernel.to(dtype)
    x = F.pad(input, (p[1], p[1], p[0], p[0])) if (p[0] or p[1]) else input
    if native_impl:  # the reference: plain autograd on the unfolded windows
        cols = F.unfold(x, k, dilation=d, stride=s).view(b, c, k[0], k[1], *out_hw)
        return (cols * kernel).sum(dim=(2, 3))
    # Strided views per tap: autograd keeps views of x and of the kernel, never an im2col copy.
    out = x.new_zeros(b, c, *out_hw)
    for u in range(k[0]):
        for v in range(k[1]):
            sh, sw = _tap_slices(u, v, d, s, out_hw)
            out = out + x[:, :, sh, sw] * kernel[:, :, u, v]
    return out


def official_transposed_weight_to_torch(weight: Tensor) -> Tensor:
    """Converts an official ``PacConvTranspose2d`` weight to this module's (``nn.ConvTranspose2d``) convention.

    The official layer correlates with the unflipped weight, so the conversion is a spatial flip. It is its own
    inverse: applying it again converts back.

    Shape:
        - weight: ``(C_in, C_out, kh, kw)`` or ``(1, 1, kh, kw)``; output: same.
    """
    _check_tensor(weight, "weight", 4, "(C_in, C_out, kh, kw)")
    return weight.flip(-2, -1)


def load_official_state_dict(model: nn.Module, state_dict: dict[str, Tensor], strict: bool = True) -> object:
    """Loads a state dict saved from the official PAC code into ``model`` (the released pretrained networks).

    Parameter names are the same; the weight of every :class:`PacConvTranspose2d` in ``model`` is flipped
    spatially on the way in (:func:`official_transposed_weight_to_torch`), because the official transposed layer
    correlates with the unflipped weight. ``state_dict`` itself is left unchanged.

    Returns:
        What ``model.load_state_dict`` returns (missing and unexpected keys when ``strict=False``).
    """
    converted = dict(state_dict)
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if isinstance(module, PacConvTranspose2d) and key in converted:
            converted[key] = official_transposed_weight_to_torch(converted[key])
    return model.load_state_dict(converted, strict=strict)


# ----------------------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------------------
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
        smooth_kind, smooth_size = _parse_smooth_kernel_type(smooth_kernel_type)

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

    def _kernel_for_forward(
        self, input_2d: Tensor, input_for_kernel: Tensor | None, kernel: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        self._check_input(input_2d)
        b, c, h, w = input_2d.shape
        if mask is not None:
            _check_tensor(mask, "mask", 4, f"(B, 1, H, W) = {(b, 1, h, w)}")
            if tuple(mask.shape) != (b, 1, h, w):
                raise ValueError(f"mask must have shape (B, 1, H, W) = {(b, 1, h, w)}, got {tuple(mask.shape)}")
        if kernel is not None:
            output_mask = None
            if mask is not None:  # the given kernel is used as is; report outputs with at least one valid neighbour
                valid = nd2col(
                    mask.to(kernel.dtype),
                    self.kernel_size,
                    self.stride,
                    self.padding,
                    self.output_padding,
                    self.dilation,
                    transposed=self.transposed,
                )
                output_mask = (valid.sum(dim=(2, 3)) != 0).to(kernel.dtype)
            return kernel, output_mask
        self._check_guidance(input_2d, input_for_kernel)
        return self.compute_kernel(input_for_kernel, mask)

    def _check_input(self, input_2d: Tensor) -> None:
        _check_tensor(input_2d, "input_2d", 4, "(B, C, H, W)")
        _check_float(input_2d, "input_2d")
        if not self.pool_only and input_2d.shape[1] != self.in_channels:
            raise ValueError(
                f"input_2d must have in_channels={self.in_channels} channels, got shape {tuple(input_2d.shape)}"
            )

    def _check_guidance(self, input_2d: Tensor, input_for_kernel: Tensor | None) -> None:
        b, _, h, w = input_2d.shape
        expected_hw = self._expected_guidance_size((h, w))
        where = " (the output size of this transposed layer)" if self.transposed else " (the size of input_2d)"
        _check_tensor(
            input_for_kernel, "input_for_kernel", 4, f"(B, F, H, W) with (B, H, W) = {(b,) + tuple(expected_hw)}"
        )
        _check_float(input_for_kernel, "input_for_kernel")
        if input_for_kernel.shape[0] != b:
            raise ValueError(
                f"input_for_kernel must have batch size {b} like input_2d, got shape {tuple(input_for_kernel.shape)}"
            )
        if tuple(input_for_kernel.shape[2:]) != tuple(expected_hw):
            raise ValueError(
                f"input_for_kernel must have spatial size {tuple(expected_hw)}{where}, got "
                f"{tuple(input_for_kernel.shape[2:])}"
            )
        _check_same_dtype((("input_2d", input_2d), ("input_for_kernel", input_for_kernel)), input_2d.device.type)

    def _fused_forward(
        self, input_2d: Tensor, input_for_kernel: Tensor | None, kernel: Tensor | None, mask: Tensor | None
    ) -> Tensor | None:
        """The fused Gaussian path (:class:`_PacGaussianCorrelate`) when this call allows it, else ``None``."""
        if (
            kernel is not None
            or mask is not None
            or self.native_impl
            or (not self.transposed and self.stride != (1, 1))  # strided PacConv2d: the tap loop
            or self.kernel_type != "gaussian"
            or self.smooth_kernel_type != "none"
            or self.normalize_kernel
            or not isinstance(input_2d, Tensor)
            or input_2d.dim() != 4
            or input_2d.dtype not in (torch.float32, torch.float64)
            or _autocast_on(input_2d.device.type)
        ):
            return None
        self._check_input(input_2d)
        self._check_guidance(input_2d, input_for_kernel)
        params = (("input_2d", input_2d), ("weight", self.weight), ("bias", self.bias))
        _check_same_dtype(params, input_2d.device.type)
        h, w = input_2d.shape[2:]
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        out_hw = self._expected_guidance_size((h, w))
        if out_hw[0] < 1 or out_hw[1] < 1:
            return None  # let the general path raise its error
        if not _use_rows(input_2d, (1, 1)):
            return None  # CUDA: the general path (unfold forms, or the tap loop for large transposed layers)
        channels = input_2d.shape[1] if self.shared_filters else min(self.in_channels, self.out_channels)
        if not self.transposed:
            rplan = _conv_rows_plan(input_2d, k, p, d)
            if rplan.out_hw[0] < 1 or rplan.out_hw[1] < 1 or not _rows_worth_it(channels, rplan):
                return None  # the general path: its error, or the tap loop
            gplan = _conv_guide_plan(k, p, d, rplan.out_hw)
            return _PacGaussianCorrelate.apply(
                input_2d, input_for_kernel, self.weight, self.bias, rplan, gplan, self.shared_filters
            )
        rplan, plan = _transposed_rows_plan(input_2d, k, s, p, d, out_hw)
        gplan = _transposed_guide_plan(plan, k, s, d)
        weight = self.weight.flip(-2, -1) if self.shared_filters else self.weight.transpose(0, 1).flip(-2, -1)
        if not _rows_worth_it(channels, rplan):
            return _PacGaussianCorrelateTaps.apply(
                input_2d, input_for_kernel, weight, self.bias, plan, rplan.pad, gplan, self.shared_filters
            )
        return _PacGaussianCorrelate.apply(
            input_2d, input_for_kernel, weight, self.bias, rplan, gplan, self.shared_filters
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
        fused = self._fused_forward(input_2d, input_for_kernel, kernel, mask)
        if fused is not None:
            return fused
        kernel, output_mask = self._kernel_for_forward(input_2d, input_for_kernel, kernel, mask)
        output = pacconv2d(
            input_2d,
            kernel,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.shared_filters,
            self.native_impl,
        )
        return output if mask is None else (output, output_mask)


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
        fused = self._fused_forward(input_2d, input_for_kernel, kernel, mask)
        if fused is not None:
            return fused
        kernel, output_mask = self._kernel_for_forward(input_2d, input_for_kernel, kernel, mask)
        output = pacconv_transpose2d(
            input_2d,
            kernel,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.dilation,
            self.shared_filters,
            self.native_impl,
        )
        return output if mask is None else (output, output_mask)


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
        if (
            kernel is None
            and self.channel_wise
            and isinstance(input_2d, Tensor)
            and isinstance(input_for_kernel, Tensor)
            and input_2d.dim() == 4
            and input_for_kernel.dim() == 4
            and input_for_kernel.shape[1] != input_2d.shape[1]
        ):
            raise ValueError(
                f"channel_wise=True needs a guidance with as many channels as the input (F == C), got "
                f"input_2d {tuple(input_2d.shape)} and input_for_kernel {tuple(input_for_kernel.shape)}"
            )
        kernel, output_mask = self._kernel_for_forward(input_2d, input_for_kernel, kernel, mask)
        output = pacpool2d(
            input_2d, kernel, self.kernel_size, self.stride, self.padding, self.dilation, self.native_impl
        )
        return output if mask is None else (output, output_mask)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.out_channels == -1 else f"{s}, out_channels={self.out_channels}"
