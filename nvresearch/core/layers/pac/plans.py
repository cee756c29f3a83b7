"""Plans: which input samples each filter tap multiplies and which outputs it writes (pure geometry, no tensors
kept). The forms execute a plan; the dispatcher builds the plan it needs to decide (e.g. the rows form's padding)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _tap_slices(
    u: int, w: int, dilation: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[slice, slice]:
    h0, w0 = u * dilation[0], w * dilation[1]
    return (
        slice(h0, h0 + stride[0] * (out_hw[0] - 1) + 1, stride[0]),
        slice(w0, w0 + stride[1] * (out_hw[1] - 1) + 1, stride[1]),
    )


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
        return bases, [t.flatten(2) for t in bases]

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


class _RowsPlan(NamedTuple):
    """The zero-padded input as one ``(B*Hp*Wp, C)`` matrix of pixel rows (channels last), and where the taps read.

    Output ``(m_y, m_x)`` of a phase (the whole output of a convolution; one of the ``stride**2`` sub-grids of a
    transposed convolution, see :class:`_TapPlan`) of sample ``b`` lives in row ``b*Hp*Wp + m_y*Wp + m_x`` of that
    phase's output matrix, and its tap ``t`` reads the input row ``offset_t`` further down. So each tap's input is
    the same matrix shifted by a row offset: a plain 2-D view that a matrix product reads directly, no copy per tap.
    Rows with ``m_x >= mw`` or ``m_y >= mh`` are padding: their kernel entries and output gradients are zero, and
    they are dropped at the end; ``slack`` zero rows after the last sample keep the last taps' views in bounds.

    The same geometry serves the channels-first layout of the cols forms (``channels_first=True`` in the methods
    below): a ``(C, rows + slack)`` matrix whose pixel rows are columns, each tap's input a column-offset view.
    """

    batch: int
    in_hw: tuple[int, int]
    pad: tuple[int, int, int, int]  # (left, right, top, bottom) zero padding of the input
    padded_hw: tuple[int, int]
    out_hw: tuple[int, int]
    phases: tuple[tuple[slice, slice], ...]  # output sub-grid of each phase
    phase_hw: tuple[tuple[int, int], ...]
    taps: tuple[tuple[int, int, int, int], ...]  # (u, w, phase, row offset)
    tiling: tuple[int, int]  # (bytes of one tile's rows x channels block, minimum rows per tile), from the dispatcher

    @property
    def rows(self) -> int:
        return self.batch * self.padded_hw[0] * self.padded_hw[1]

    @property
    def slack(self) -> int:
        return max(t[3] for t in self.taps)

    def pixels(self, t: Tensor, channels_first: bool = False) -> Tensor:
        """A ``(rows [+ slack], C)`` matrix as ``(B, Hp, Wp, C)``; channels first, ``(C, rows [+ slack])`` as
        ``(C, B, Hp, Wp)``."""
        if channels_first:
            return t[:, : self.rows].view(t.shape[0], self.batch, *self.padded_hw)
        return t[: self.rows].view(self.batch, *self.padded_hw, t.shape[-1])

    def inputs(self, x: Tensor, channels_first: bool = False) -> Tensor:
        """``(B, C, H, W)`` -> the zero-padded rows ``(rows + slack, C)``, or ``(C, rows + slack)`` channels first."""
        (h, w), (left, _, top, _) = self.in_hw, self.pad
        if channels_first:
            xc = x.new_zeros(x.shape[1], self.rows + self.slack)
            self.pixels(xc, True)[:, :, top : top + h, left : left + w] = x.transpose(0, 1)
            return xc
        xr = x.new_zeros(self.rows + self.slack, x.shape[1])
        self.pixels(xr)[:, top : top + h, left : left + w] = x.permute(0, 2, 3, 1)
        return xr

    def input_grad(self, gr: Tensor, channels_first: bool = False) -> Tensor:
        """The gradient of :meth:`inputs`: rows -> ``(B, C, H, W)``."""
        (h, w), (left, _, top, _) = self.in_hw, self.pad
        if channels_first:
            return self.pixels(gr, True)[:, :, top : top + h, left : left + w].transpose(0, 1).contiguous()
        return self.pixels(gr)[:, top : top + h, left : left + w].permute(0, 3, 1, 2).contiguous()

    def outputs(self, phase_rows: list[Tensor], channels_first: bool = False) -> Tensor:
        """Per-phase output rows ``(rows, O)`` (``(O, rows)`` channels first) -> ``(B, O, H_out, W_out)``."""
        if channels_first:
            crops = [
                self.pixels(r, True)[:, :, :mh, :mw].transpose(0, 1) for r, (mh, mw) in zip(phase_rows, self.phase_hw)
            ]
            o = phase_rows[0].shape[0]
        else:
            crops = [self.pixels(r)[:, :mh, :mw].permute(0, 3, 1, 2) for r, (mh, mw) in zip(phase_rows, self.phase_hw)]
            o = phase_rows[0].shape[1]
        if len(crops) == 1:
            return crops[0].contiguous()
        out = phase_rows[0].new_empty(self.batch, o, *self.out_hw)
        for (ry, rx), crop in zip(self.phases, crops):
            out[:, :, ry, rx] = crop
        return out

    def output_grads(self, g: Tensor, channels_first: bool = False) -> list[Tensor]:
        """The output gradient ``(B, O, H_out, W_out)`` as per-phase rows ``(rows, O)`` (``(O, rows)`` channels
        first), zero on padding rows."""
        grads = []
        for (ry, rx), (mh, mw) in zip(self.phases, self.phase_hw):
            if channels_first:
                gr = g.new_zeros(g.shape[1], self.rows)
                self.pixels(gr, True)[:, :, :mh, :mw] = g[:, :, ry, rx].transpose(0, 1)
            else:
                gr = g.new_zeros(self.rows, g.shape[1])
                self.pixels(gr)[:, :mh, :mw] = g[:, :, ry, rx].permute(0, 2, 3, 1)
            grads.append(gr)
        return grads

    def kernel_rows(self, kernel: Tensor, channels_first: bool = False) -> Tensor:
        """``(B, 1, kh, kw, H_out, W_out)`` -> ``(taps, rows, 1)`` (``(taps, 1, rows)`` channels first): each tap's
        entries on its phase, zero elsewhere."""
        kr = kernel.new_zeros(len(self.taps), self.batch, *self.padded_hw)
        for t, (u, v, ph, _) in enumerate(self.taps):
            (ry, rx), (mh, mw) = self.phases[ph], self.phase_hw[ph]
            kr[t, :, :mh, :mw] = kernel[:, 0, u, v, ry, rx]
        return kr.view(len(self.taps), 1, self.rows) if channels_first else kr.view(len(self.taps), self.rows, 1)

    def kernel_grad(self, gk: Tensor, like: Tensor) -> Tensor:
        """The gradient of :meth:`kernel_rows`: ``(taps, rows)`` -> the shape of ``like`` (entries no tap reads: 0)."""
        out = torch.zeros_like(like)
        gk = gk.view(len(self.taps), self.batch, *self.padded_hw)
        for t, (u, v, ph, _) in enumerate(self.taps):
            (ry, rx), (mh, mw) = self.phases[ph], self.phase_hw[ph]
            out[:, 0, u, v, ry, rx] = gk[t, :, :mh, :mw]
        return out

    def tiles(self, channels: int, like: Tensor) -> list[tuple[int, int]]:
        """Row ranges of about ``tiling[0]`` bytes per ``channels``-wide block of ``like``'s dtype, at least
        ``tiling[1]`` rows (all rows at once while compiling, where tiles only make the graph longer; none for an
        empty batch)."""
        if torch.compiler.is_compiling():
            return [(0, self.rows)] if self.rows else []
        tile_bytes, min_tile = self.tiling
        step = max(min_tile, tile_bytes // (channels * like.element_size()))
        return [(r, min(r + step, self.rows)) for r in range(0, self.rows, step)]

    def by_phase(self) -> list[tuple[int, list[int]]]:
        """``(phase, tap indices)`` for every phase with outputs."""
        taps: dict[int, list[int]] = {}
        for t, (_, _, ph, _) in enumerate(self.taps):
            if self.phase_hw[ph][0] * self.phase_hw[ph][1]:
                taps.setdefault(ph, []).append(t)
        return sorted(taps.items())


def _conv_rows_plan(
    input: Tensor,
    kernel_size: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    tiling: tuple[int, int],
) -> _RowsPlan:
    """Rows plan of a stride-1 convolution."""
    b, _, h, w = input.shape
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    out_hw = (hp - dilation[0] * (kernel_size[0] - 1), wp - dilation[1] * (kernel_size[1] - 1))
    taps = tuple(
        (u, v, 0, u * dilation[0] * wp + v * dilation[1]) for u in range(kernel_size[0]) for v in range(kernel_size[1])
    )
    pad = (padding[1], padding[1], padding[0], padding[0])
    return _RowsPlan(b, (h, w), pad, (hp, wp), out_hw, ((slice(None), slice(None)),), (out_hw,), taps, tiling)


def _transposed_rows_plan(
    input: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
    tiling: tuple[int, int],
) -> tuple[_RowsPlan, _TapPlan]:
    """Rows plan of a transposed convolution (its polyphase :class:`_TapPlan`, on the original input), and that plan."""
    b, _, h, w = input.shape
    plan, pad = _transposed_plan((h, w), kernel_size, stride, padding, dilation, out_hw)
    hp, wp = h + pad[2] + pad[3], w + pad[0] + pad[1]
    taps = tuple((u, v, ph, sh.start * wp + sw.start) for u, v, ph, sh, sw in plan.taps)
    return _RowsPlan(b, (h, w), pad, (hp, wp), out_hw, plan.phases, plan.phase_hw, taps, tiling), plan
