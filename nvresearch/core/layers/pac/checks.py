"""Argument parsing and input checks of the PAC layers: every message a caller can get for a bad argument lives here.

The functional API and the modules validate their arguments once, here, and then run the chosen form unchecked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

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


# ----------------------------------------------------------------------------------------------------------------------
# Calls: the functional API and the modules
# ----------------------------------------------------------------------------------------------------------------------
class _Call(NamedTuple):
    """A checked PAC call: its geometry and output size."""

    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    out_hw: tuple[int, int]


def _out_size(
    in_hw: tuple[int, int],
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    op: tuple[int, int],
    d: tuple[int, int],
    transposed: bool,
) -> tuple[int, int]:
    """The output size of a (transposed) PAC; raises when it is empty."""
    if transposed:
        out_hw = tuple(_conv_transpose_out(n, *a) for n, *a in zip(in_hw, k, s, p, op, d))
        if out_hw[0] < 1 or out_hw[1] < 1:
            raise ValueError(f"output size {out_hw} is not positive for input size {in_hw} and padding={p}")
    else:
        out_hw = tuple(_conv_out(n, *a) for n, *a in zip(in_hw, k, s, p, d))
        if out_hw[0] < 1 or out_hw[1] < 1:
            raise ValueError(
                f"input of spatial size {in_hw} is too small for kernel_size={k}, padding={p}, dilation={d}"
            )
    return out_hw  # type: ignore[return-value]


def _check_weight(
    input: Tensor, weight: Tensor, bias: Tensor | None, shared_filters: bool, transposed: bool
) -> tuple[int, int, int]:
    """Checks the filter and bias against the input; returns ``(out_channels, kh, kw)``."""
    w_doc = "(1, 1, kh, kw)" if shared_filters else ("(C_in, C_out, kh, kw)" if transposed else "(C_out, C_in, kh, kw)")
    _check_tensor(weight, "weight", 4, w_doc)
    _check_float(weight, "weight")
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
    return out_channels, kh, kw


def _check_kernel(
    kernel: object, b: int, channels: tuple[int, ...], k: tuple[int, int], out_hw: tuple[int, int]
) -> None:
    """A given kernel: 6-D, floating point, ``channels`` allowed in dim 1 (``(1,)`` for convolutions)."""
    doc = "(B, 1, kh, kw, H_out, W_out)" if channels == (1,) else "(B, 1 or C, kh, kw, H_out, W_out)"
    _check_tensor(kernel, "kernel", 6, doc)
    _check_float(kernel, "kernel")
    if kernel.shape[1] not in channels:
        if channels == (1,):
            raise ValueError(
                f"kernel must have a single channel, shape (B, 1, kh, kw, H_out, W_out); channel_wise kernels are "
                f"only for pooling, got shape {tuple(kernel.shape)}"
            )
        raise ValueError(
            f"a channel-wise kernel needs as many channels as the input (F == C): kernel has {kernel.shape[1]}, "
            f"input has {channels[-1]} channels"
        )
    expected = (b, kernel.shape[1]) + tuple(k) + tuple(out_hw)
    if tuple(kernel.shape) != expected:
        raise ValueError(f"kernel must have shape {doc} = {expected}, got {tuple(kernel.shape)}")


def _check_guidance(
    input: Tensor, guidance: object, expected_hw: tuple[int, int], names: tuple[str, str], where: str
) -> None:
    """The guidance of a call whose kernel is computed from it: batch of the input, spatial size ``expected_hw``."""
    in_name, g_name = names
    b = input.shape[0]
    _check_tensor(guidance, g_name, 4, f"(B, F, H, W) with (B, H, W) = {(b,) + tuple(expected_hw)}")
    _check_float(guidance, g_name)
    if guidance.shape[0] != b:
        raise ValueError(f"{g_name} must have batch size {b} like {in_name}, got shape {tuple(guidance.shape)}")
    if tuple(guidance.shape[2:]) != tuple(expected_hw):
        raise ValueError(
            f"{g_name} must have spatial size {tuple(expected_hw)}{where}, got {tuple(guidance.shape[2:])}"
        )


def _check_conv_call(
    input: Tensor,
    kernel: Tensor | None,
    guidance: Tensor | None,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntPair,
    padding: IntPair,
    output_padding: IntPair,
    dilation: IntPair,
    shared_filters: bool,
    transposed: bool,
) -> _Call:
    """All checks of :func:`pacconv2d` / :func:`pacconv_transpose2d` (``kernel`` or ``guidance``, not both)."""
    _check_tensor(input, "input", 4, "(B, C, H, W)")
    _check_float(input, "input")
    if (kernel is None) == (guidance is None):
        raise TypeError("give either kernel (from packernel2d) or guidance= (for a Gaussian kernel), not both")
    if kernel is not None:
        _check_tensor(kernel, "kernel", 6, "(B, 1, kh, kw, H_out, W_out)")
    out_channels, kh, kw = _check_weight(input, weight, bias, shared_filters, transposed)
    s, p, op, d = (
        _pair(v, n)
        for v, n in (
            (stride, "stride"),
            (padding, "padding"),
            (output_padding, "output_padding"),
            (dilation, "dilation"),
        )
    )
    _check_geometry((kh, kw), s, p, d)
    if transposed:
        _check_output_padding(op, s, d)
    out_hw = _out_size(tuple(input.shape[2:]), (kh, kw), s, p, op, d, transposed)
    if kernel is not None:
        _check_kernel(kernel, input.shape[0], (1,), (kh, kw), out_hw)
        second = ("kernel", kernel)
    else:
        g_hw = out_hw if transposed else tuple(input.shape[2:])
        where = " (the output size)" if transposed else " (the size of input)"
        _check_guidance(input, guidance, g_hw, ("input", "guidance"), where)
        second = ("guidance", guidance)
    _check_same_dtype((("input", input), second, ("weight", weight), ("bias", bias)), input.device.type)
    return _Call(out_channels, (kh, kw), s, p, op, d, out_hw)


def _check_pool_call(
    input: Tensor, kernel: Tensor, kernel_size: IntPair, stride: IntPair, padding: IntPair, dilation: IntPair
) -> _Call:
    """All checks of :func:`pacpool2d`."""
    _check_tensor(input, "input", 4, "(B, C, H, W)")
    _check_tensor(kernel, "kernel", 6, "(B, 1 or C, kh, kw, H_out, W_out)")
    _check_float(input, "input")
    k, s, p, d = (
        _pair(v, n)
        for v, n in ((kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding"), (dilation, "dilation"))
    )
    _check_geometry(k, s, p, d)
    out_hw = _out_size(tuple(input.shape[2:]), k, s, p, (0, 0), d, False)
    _check_kernel(kernel, input.shape[0], (1, input.shape[1]), k, out_hw)
    _check_same_dtype((("input", input), ("kernel", kernel)), input.device.type)
    return _Call(input.shape[1], k, s, p, (0, 0), d, out_hw)


def _check_layer_call(layer: object, input_2d: object, input_for_kernel: object, kernel: object, mask: object) -> _Call:
    """All checks of a module call (``layer`` is a PAC module), with the module's argument names."""
    if (
        kernel is None
        and layer.channel_wise
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
    _check_tensor(input_2d, "input_2d", 4, "(B, C, H, W)")
    _check_float(input_2d, "input_2d")
    if not layer.pool_only and input_2d.shape[1] != layer.in_channels:
        raise ValueError(
            f"input_2d must have in_channels={layer.in_channels} channels, got shape {tuple(input_2d.shape)}"
        )
    b, c, h, w = input_2d.shape
    if mask is not None:
        _check_tensor(mask, "mask", 4, f"(B, 1, H, W) = {(b, 1, h, w)}")
        if tuple(mask.shape) != (b, 1, h, w):
            raise ValueError(f"mask must have shape (B, 1, H, W) = {(b, 1, h, w)}, got {tuple(mask.shape)}")
    geometry = (layer.kernel_size, layer.stride, layer.padding, layer.output_padding, layer.dilation)
    if kernel is not None:
        if layer.pool_only:
            return _check_pool_call(input_2d, kernel, *geometry[:3], layer.dilation)
        return _check_conv_call(
            input_2d, kernel, None, layer.weight, layer.bias, *geometry[1:], layer.shared_filters, layer.transposed
        )
    out_hw = _out_size((h, w), *geometry, layer.transposed)
    where = " (the output size of this transposed layer)" if layer.transposed else " (the size of input_2d)"
    _check_guidance(
        input_2d, input_for_kernel, out_hw if layer.transposed else (h, w), ("input_2d", "input_for_kernel"), where
    )
    named = [("input_2d", input_2d), ("input_for_kernel", input_for_kernel)]
    if not layer.pool_only:
        named += [("weight", layer.weight), ("bias", layer.bias)]
    _check_same_dtype(named, input_2d.device.type)
    out_channels = c if (layer.pool_only or layer.shared_filters) else layer.out_channels
    return _Call(out_channels, *geometry, out_hw)
