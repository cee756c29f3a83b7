"""The dispatcher: the one place that decides which implementation form of PAC runs.

Every call of the functional API (and so every module call) asks :func:`route_conv`, :func:`route_transposed` or
:func:`route_pool` which form to run, and :func:`distance_form` how the kernel's squared distances are computed.
The choice depends on the device, the dtype, the shapes and memory, and on an explicit request: the ``form=``
keyword of the functional API, or the :func:`pac_form` context manager (which the modules honour). The forms:

========================  ==================================================================  =====================
form                      what it is                                                          applies to
========================  ==================================================================  =====================
``'rows'``                channels-last pixel rows, one thin matrix product per tap and tile  CPU, stride-1 reads
``'fused_rows'``          the rows form with the Gaussian kernel computed inside it           CPU, stride-1 reads,
                                                                                              guidance given
``'cols'``                the rows geometry with channels first, one product per tap and tile CPU, stride-1 reads
``'fused_cols'``          the cols form with the Gaussian kernel computed inside it           CPU, stride-1 reads,
                                                                                              guidance given
``'fused_taps'``          the fused Gaussian with channels first, taps stacked per phase      CPU, transposed,
                                                                                              guidance given
``'taploop'``             strided slices per tap, channels first                              everywhere
``'unfold'``              im2col + one matrix product per batch chunk                         everywhere
``'reference'``           plain autograd on ``F.unfold`` (``native_impl=True``)               everywhere
========================  ==================================================================  =====================

``'auto'`` (the default) picks, per call:

1. ``native_impl=True``: the reference.
2. CUDA: the unfold form (the loops are launch-bound there); a strided transposed layer only while the im2col of
   its zero-inserted input stays under :data:`_UNFOLD_TRANSPOSED_BYTES`, else the tap loop.
3. CPU, stride-1 reads (``PacConv2d`` with stride 1, every ``PacConvTranspose2d`` through its polyphase plan): the
   rows form where it pays (:func:`_rows_worth_it`: at least :data:`_ROWS_MIN_CHANNELS` channels and at most
   :data:`_ROWS_MAX_WASTE` padded rows per output), fused with the Gaussian kernel when the guidance is given in
   float32/float64 without autocast.
4. CPU, stride-1 reads, narrower layers on large images (:func:`_cols_worth_it`: at least :data:`_COLS_MIN_CHANNELS`
   channels and :data:`_COLS_MIN_ROWS` rows per phase, the same padding bound): the cols form, fused likewise.
5. Otherwise the tap loop (fused, channels first, for transposed layers with the guidance given).

A requested form that does not apply raises a ``ValueError`` that says why and lists the forms.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor

from nvresearch.core.layers.pac.checks import _autocast_on
from nvresearch.core.layers.pac.plans import _conv_rows_plan, _RowsPlan, _TapPlan, _transposed_rows_plan

__all__ = ["FORMS", "pac_form"]

FORMS = ("auto", "rows", "fused_rows", "cols", "fused_cols", "fused_taps", "taploop", "unfold", "reference")
_ROWS_FORMS = ("rows", "fused_rows", "cols", "fused_cols")  # the forms on a _RowsPlan (CPU, stride-1 reads)
_KERNEL_FORMS = ("auto", "taploop", "unfold", "reference")  # ways to compute the kernel's squared distances
_POOL_FORMS = ("auto", "taploop", "reference")

# ----------------------------------------------------------------------------------------------------------------------
# Tunables (measured on a 2-core VM unless said otherwise)
# ----------------------------------------------------------------------------------------------------------------------
_ROWS_TILE_BYTES = 512 * 2**10  # one tile's (rows x channels) block: about a core's L2 cache
_ROWS_MIN_TILE = 256  # rows; smaller tiles cost more in per-call overhead than they gain in cache
# Below these the rows form loses to the channels-first loops (measured: a 5x5 PAC-CRF message at dilation 8 on
# 64x64 images, 8 channels, padded rows 2.25x the outputs, ran 3x slower; 16-channel transposed layers were slower too)
_ROWS_MIN_CHANNELS = 32
_ROWS_MAX_WASTE = 1.5  # padded rows per output pixel (per phase)
# Narrower layers of at least _COLS_MIN_CHANNELS take the cols form (the rows geometry with channels first) from
# _COLS_MIN_ROWS padded rows per phase on (one thread, interleaved, docs/papers/pac.md "Layer speed": 8-16 channels at
# 256x256 ran 1.3-1.7x faster than the tap loop; at 64x64 B4 the tap loops' fewer calls per tap win; the PAC-CRF's
# 2-5-class messages at 64x64 B8/B32 ran within +-10 % of the tap loop either way, so they keep it)
_COLS_MIN_CHANNELS = 8
_COLS_MIN_ROWS = 16384
_COLS_TILE_BYTES = 2**20  # one tile's (channels x columns) block of the cols forms: 16384 columns at 16 channels
_GROUP_BYTES = 4 * 2**20  # transient K*x buffer of one tap group of the channels-first fused form
# The tap loop with a precomputed kernel stacks no taps: on 2 cores one thin matrix product per tap measured as fast
# or faster (k5 B4 16 or 32 channels at 64x64, k3 B8 64 channels at 32x32; 4 MB groups were 5-10 % slower).
_CORRELATE_GROUP_BYTES = 0
_UNFOLD_BYTES = 256 * 2**20  # im2col of one batch chunk on the unfold path (CUDA)
# A strided transposed layer unfolds its zero-inserted input, S**2 times more work than the input holds: on CUDA it
# takes the unfold form only while that im2col is this small (on an H200 the unfold forms ran 3-4x faster than the
# tap loop at the benchmark's small shapes and on par at B=16, 128x128).
_UNFOLD_TRANSPOSED_BYTES = 64 * 2**20


class _Request(NamedTuple):
    """What :func:`pac_form` asked for: a form and optional tuning (``None``: the tunables above)."""

    form: str = "auto"
    tile_rows: int | None = None
    chunk_bytes: int | None = None
    group_bytes: int | None = None


# A plain module global rather than a ContextVar: torch.compile reads it as a guarded constant (no graph break).
_ACTIVE = _Request()


@contextmanager
def pac_form(
    form: str = "auto",
    *,
    tile_rows: int | None = None,
    chunk_bytes: int | None = None,
    group_bytes: int | None = None,
) -> Iterator[None]:
    """Runs the PAC layers and functions of the block with one implementation form (tests, benchmarks).

    A ``form=`` keyword other than ``'auto'`` on a functional call takes precedence; ``native_impl=True`` layers keep
    running the reference. A form that does not apply to a call raises a ``ValueError`` there.

    Args:
        form: One of :data:`FORMS`.
        tile_rows: Pixel rows per tile of the rows and cols forms (default: about 512 KB per tile, 1 MB for the cols
            forms, at least 256 rows).
        chunk_bytes: Budget of one batch chunk's im2col in the unfold form (default 256 MB; 1 = one sample a chunk).
        group_bytes: Budget of the stacked ``K*x`` of one tap group in the tap loops (default: one tap per group for
            a given kernel, 4 MB for the fused Gaussian).

    Example:
        >>> import torch
        >>> from nvresearch.core.layers.pac import PacConv2d, pac_form
        >>> layer = PacConv2d(4, 4, 3, padding=1)
        >>> x, f = torch.randn(1, 4, 8, 8), torch.randn(1, 2, 8, 8)
        >>> with pac_form("reference"):
        ...     ref = layer(x, f)
        >>> torch.allclose(layer(x, f), ref, atol=1e-5)
        True
    """
    global _ACTIVE
    _check_name(form, FORMS, "pac_form")
    for name, value in (("tile_rows", tile_rows), ("chunk_bytes", chunk_bytes), ("group_bytes", group_bytes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
    previous, _ACTIVE = _ACTIVE, _Request(form, tile_rows, chunk_bytes, group_bytes)
    try:
        yield
    finally:
        _ACTIVE = previous


def _check_name(form: object, allowed: tuple[str, ...], what: str) -> None:
    if not isinstance(form, str) or form not in FORMS:
        raise ValueError(f"unknown PAC form {form!r}; the forms are {FORMS}")
    if form not in allowed:
        raise ValueError(f"{what} cannot run form {form!r}; its forms are {allowed}")


def _requested(form: str, native_impl: bool | None, allowed: tuple[str, ...], what: str) -> str:
    """The form asked for: the keyword, else the active :func:`pac_form`; ``native_impl=True`` is the reference."""
    _check_name(form, allowed, what)
    if native_impl:
        if form not in ("auto", "reference"):
            raise ValueError(f"native_impl=True runs the reference form, but form={form!r} was requested")
        return "reference"
    return form if form != "auto" else _ACTIVE.form


def _unavailable(form: str, why: str) -> ValueError:
    return ValueError(f"PAC form {form!r} does not apply here: {why}; the forms are {FORMS}")


class Route(NamedTuple):
    """The dispatcher's answer: the form, the plans it built while deciding, the tuning to run it with."""

    form: str
    rows: _RowsPlan | None  # the rows forms; transposed layers: also the padding of their polyphase plan
    taps: _TapPlan | None  # the polyphase plan of a transposed layer (its tap loops and rows forms)
    distance: str  # how a kernel computed from the guidance gets its squared distances
    group_bytes: int
    chunk_bytes: int


def _tiling(request: _Request) -> tuple[int, int]:
    # a requested tile of n rows: 1 byte per tile and at least n rows
    return (_ROWS_TILE_BYTES, _ROWS_MIN_TILE) if request.tile_rows is None else (1, request.tile_rows)


def _rows_worth_it(channels: int, plan: _RowsPlan) -> bool:
    """Whether the rows form pays on the CPU: matrix products wide enough (``channels``, the smaller of C_in and
    C_out) and few padding rows (those are computed and dropped)."""
    outputs = sum(plan.batch * mh * mw for mh, mw in plan.phase_hw)
    waste = plan.rows * len(plan.phases) / max(outputs, 1)
    return channels >= _ROWS_MIN_CHANNELS and waste <= _ROWS_MAX_WASTE


def _cols_worth_it(channels: int, plan: _RowsPlan) -> bool:
    """Whether the cols form pays on the CPU for a layer too narrow for the rows form: at least
    :data:`_COLS_MIN_CHANNELS` channels, enough rows per phase that its per-tap passes run on long rows (small images
    keep the channels-first loops, with fewer calls per tap) and few padding rows."""
    outputs = sum(plan.batch * mh * mw for mh, mw in plan.phase_hw)
    waste = plan.rows * len(plan.phases) / max(outputs, 1)
    return channels >= _COLS_MIN_CHANNELS and plan.rows >= _COLS_MIN_ROWS and waste <= _ROWS_MAX_WASTE


def _fused_blocker(input: Tensor, guided: bool) -> str | None:
    """Why the fused Gaussian forms cannot run this call, or ``None`` when they can."""
    if not guided:
        return "the fused forms compute a plain Gaussian kernel from the guidance; this call has a kernel"
    if input.dtype not in (torch.float32, torch.float64):
        return f"the fused forms compute in float32/float64, the input is {input.dtype}"
    if _autocast_on(input.device.type):
        return "the fused forms do not run under autocast"
    return None


def _check_request(form: str, input: Tensor, stride_one: bool, transposed: bool, blocker: str | None) -> None:
    if form in (*_ROWS_FORMS, "fused_taps") and input.is_cuda:
        raise _unavailable(form, "it is a CPU form (launch-bound on CUDA, which runs 'unfold')")
    if form in _ROWS_FORMS and not stride_one:
        raise _unavailable(form, "it reads the input at stride 1 (a strided PacConv2d runs 'taploop')")
    if form == "fused_taps" and not transposed:
        raise _unavailable(form, "it is the transposed layers' channels-first form ('fused_rows' for PacConv2d)")
    if form in ("fused_rows", "fused_cols", "fused_taps") and blocker is not None:
        raise _unavailable(form, blocker)


def distance_form(guidance: Tensor, native_impl: bool | None, form: str = "auto") -> str:
    """How the kernel's squared distances are computed: ``'reference'``, ``'unfold'`` (CUDA) or ``'taploop'``."""
    requested = _requested(form, native_impl, FORMS, "packernel2d")
    if requested == "auto":
        return "unfold" if guidance.is_cuda else "taploop"
    if requested in _KERNEL_FORMS:
        return requested
    return "taploop"  # a correlation-only form (a CPU form): the kernel takes the CPU's tap loop


def _route(
    form: str, auto: bool, request: _Request, rows: _RowsPlan | None, taps: _TapPlan | None, guidance: Tensor | None
) -> Route:
    if form in ("cols", "fused_cols") and request.tile_rows is None:  # the cols forms' own default tiles
        rows = rows._replace(tiling=(_COLS_TILE_BYTES, _ROWS_MIN_TILE))
    # the kernel's distances follow the correlation's form; 'auto' on CUDA computes them unfolded even where a large
    # transposed layer runs the tap loop (the distances are not zero-inserted)
    if form in ("unfold", "reference"):
        distance = form
    else:
        distance = "unfold" if (auto and guidance is not None and guidance.is_cuda) else "taploop"
    default_group = _GROUP_BYTES if form == "fused_taps" else _CORRELATE_GROUP_BYTES
    return Route(
        form,
        rows,
        taps,
        distance,
        default_group if request.group_bytes is None else request.group_bytes,
        _UNFOLD_BYTES if request.chunk_bytes is None else request.chunk_bytes,
    )


def route_conv(
    input: Tensor,
    guidance: Tensor | None,
    channels: int,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    native_impl: bool | None,
    form: str,
) -> Route:
    """The form of a ``PacConv2d`` correlation. ``channels`` is the smaller of C_in and C_out; ``guidance`` is given
    when the kernel is the plain Gaussian of that guidance (not computed yet)."""
    requested = _requested(form, native_impl, FORMS, "pacconv2d")
    request = _ACTIVE
    stride_one = stride == (1, 1)
    blocker = _fused_blocker(input, guidance is not None)
    _check_request(requested, input, stride_one, False, blocker)
    rows = None
    if requested in ("auto", *_ROWS_FORMS) and stride_one and not input.is_cuda:
        rows = _conv_rows_plan(input, kernel_size, padding, dilation, _tiling(request))
    auto = requested == "auto"
    if auto:
        if input.is_cuda:
            requested = "unfold"
        elif rows is not None and _rows_worth_it(channels, rows):
            requested = "fused_rows" if blocker is None else "rows"
        elif rows is not None and _cols_worth_it(channels, rows):
            requested = "fused_cols" if blocker is None else "cols"
        else:
            requested = "taploop"
    return _route(requested, auto, request, rows, None, guidance)


def route_transposed(
    input: Tensor,
    guidance: Tensor | None,
    channels: int,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
    native_impl: bool | None,
    form: str,
) -> Route:
    """The form of a ``PacConvTranspose2d`` correlation (arguments as :func:`route_conv`)."""
    requested = _requested(form, native_impl, FORMS, "pacconv_transpose2d")
    request = _ACTIVE
    blocker = _fused_blocker(input, guidance is not None)
    _check_request(requested, input, True, True, blocker)
    auto = requested == "auto"
    if auto and input.is_cuda:
        b, c = input.shape[:2]
        cols_bytes = b * c * kernel_size[0] * kernel_size[1] * out_hw[0] * out_hw[1] * input.element_size()
        requested = "unfold" if cols_bytes <= _UNFOLD_TRANSPOSED_BYTES else "taploop"
    rows = taps = None
    if requested not in ("unfold", "reference"):  # the polyphase plan: the rows forms and the tap loops
        rows, taps = _transposed_rows_plan(input, kernel_size, stride, padding, dilation, out_hw, _tiling(request))
    if requested == "auto":
        if _rows_worth_it(channels, rows):
            requested = "fused_rows" if blocker is None else "rows"
        elif _cols_worth_it(channels, rows):
            requested = "fused_cols" if blocker is None else "cols"
        else:
            requested = "fused_taps" if blocker is None else "taploop"
    return _route(requested, auto, request, rows, taps, guidance)


def route_pool(native_impl: bool | None, form: str) -> str:
    """The form of :func:`pacpool2d`: the tap loop over strided views, or the reference."""
    requested = _requested(form, native_impl, _POOL_FORMS, "pacpool2d")
    if requested == "auto":
        return "taploop"
    if requested not in _POOL_FORMS:
        raise _unavailable(requested, f"pacpool2d runs only {_POOL_FORMS[1:]}")
    return requested
