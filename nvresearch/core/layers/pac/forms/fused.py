"""The fused Gaussian forms: ``K = exp(-0.5 |f_j - f_i|^2)`` computed tap by tap from the guidance inside the
correlation and never stored; in the rows layout (:class:`_PacGaussianCorrelate`), in the cols layout (the rows
geometry with channels first, :class:`_PacGaussianCorrelateCols`) or with channels first and strided taps
(:class:`_PacGaussianCorrelateTaps`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.core.layers.pac.forms.rows import (
    _cols_backward,
    _cols_forward,
    _rows_backward,
    _rows_forward,
    _rows_weight_grad,
)
from nvresearch.core.layers.pac.plans import _GuidePlan, _RowsPlan, _tap_groups, _TapPlan


def _gaussian_kernel_rows(
    fp: Tensor, refs: list[Tensor], rplan: _RowsPlan, gplan: _GuidePlan, dtype: torch.dtype
) -> Tensor:
    """Kernel rows ``(taps, B, Hp, Wp)``, zero off each tap's phase."""
    kr = fp.new_zeros(len(rplan.taps), rplan.batch, *rplan.padded_hw, dtype=dtype)
    for t, (_, _, ph, _) in enumerate(rplan.taps):
        mh, mw = rplan.phase_hw[ph]
        if mh * mw:
            diff = fp[:, :, gplan.taps[t][0], gplan.taps[t][1]] - refs[ph]
            kr[t, :, :mh, :mw] = torch.exp(-0.5 * (diff * diff).sum(dim=1))
    return kr


def _flat_guide(rplan: _RowsPlan, gplan: _GuidePlan) -> tuple[list[int], int] | None:
    """Where each tap and the window centre read the guidance as column offsets of the input's padded rows, when the
    guidance shares the input's grid and padding (a stride-1 ``PacConv2d``) and the taps mirror about the centre
    (odd windows), else ``None``."""
    if len(rplan.phases) != 1 or gplan.pad != rplan.pad or len(rplan.taps) % 2 == 0:
        return None
    wp = rplan.padded_hw[1]
    offsets = [sy.start * wp + sx.start for sy, sx in gplan.taps]
    cy, cx = gplan.centers[0]
    center = cy.start * wp + cx.start
    mirrored = all(a + b == 2 * center for a, b in zip(offsets, reversed(offsets)))
    if offsets != [t[3] for t in rplan.taps] or not mirrored or offsets[len(offsets) // 2] != center:
        return None
    return offsets, center


def _flat_kernel_rows(ff: Tensor, offsets: list[int], center: int, rows: int, dtype: torch.dtype) -> list[Tensor]:
    """Per-tap kernel rows ``(rows,)`` from the channels-first padded guidance rows ``ff`` (:func:`_flat_guide`).

    Every tap is a column offset, so each pass runs on whole contiguous rows instead of strided windows; and the
    kernel is symmetric, ``K(f_i, f_j) = K(f_j, f_i)``: the mirror ``t'`` of a tap ``t`` before the centre sees at
    output ``q`` the pair that ``t`` sees at ``q + d`` (``d = center - offset_t``), so one pass over ``rows + d``
    columns gives both (views of one row), and the centre tap is 1. Padding rows get finite values that the
    correlation multiplies by zeros (their outputs are dropped, their gradients are zero).
    """
    plain = not (torch.compiler.is_compiling() or torch.is_grad_enabled())
    n_taps = len(offsets)
    out: list[Tensor] = [ff.new_ones(rows, dtype=dtype)] * n_taps  # the centre's; the others replaced below
    buf = ff.new_empty(ff.shape[0], rows + center) if plain else None
    for t in range(n_taps // 2):
        n = rows + center - offsets[t]
        b, a = ff[:, offsets[t] : offsets[t] + n], ff[:, center : center + n]
        if plain:
            k = torch.sum(torch.sub(b, a, out=buf[:, :n]).square_(), dim=0).mul_(-0.5).exp_().to(dtype)
        else:
            k = torch.exp(-0.5 * (b - a).square().sum(dim=0)).to(dtype)
        out[t], out[n_taps - 1 - t] = k[:rows], k[n - rows :]
    return out


def _flat_guidance_grad(
    ff: Tensor, kr: list[Tensor], grad_kr: Tensor, offsets: list[int], center: int, rplan: _RowsPlan
) -> Tensor:
    """The guidance gradient of :func:`_flat_kernel_rows`: ``dK/d(f_j - f_i) = -K (f_j - f_i)``, ``f_j`` at the
    tap's offset, the centre ``f_i`` getting the opposite. A tap and its mirror share their pairs (see there), so
    their weights are added and each pair's difference is computed once. Returns ``(B, F, H, W)``."""
    rows, n_taps = rplan.rows, len(offsets)
    grad_kr = grad_kr.view(n_taps, rows)
    grad_ff = torch.zeros_like(ff)
    for t in range(n_taps // 2):
        mirror, d = n_taps - 1 - t, center - offsets[t]
        w = ff.new_zeros(rows + d)
        w[:rows] += (grad_kr[t] * kr[t]).to(ff.dtype)
        w[d:] += (grad_kr[mirror] * kr[mirror]).to(ff.dtype)
        g = (ff[:, offsets[t] : offsets[t] + rows + d] - ff[:, center : center + rows + d]) * w
        grad_ff[:, offsets[t] : offsets[t] + rows + d] -= g
        grad_ff[:, center : center + rows + d] += g
    return rplan.input_grad(grad_ff, True)


def _kernel_view(kr: Tensor | list[Tensor], rplan: _RowsPlan, channels_first: bool) -> Tensor | list[Tensor]:
    """Kernel rows as the correlation reads them: ``(taps, rows, 1)``, or ``(taps, 1, rows)`` channels first (or
    such a view of each tap's row, from :func:`_flat_kernel_rows`)."""
    shape = (1, rplan.rows) if channels_first else (rplan.rows, 1)
    if isinstance(kr, list):
        return [k.view(shape) for k in kr]
    return kr.view(len(rplan.taps), *shape)


def _gaussian_forward(
    ctx: torch.autograd.function.FunctionCtx,
    x: Tensor,
    f: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    rplan: _RowsPlan,
    gplan: _GuidePlan,
    shared: bool,
    channels_first: bool,
) -> Tensor:
    """The forward of :class:`_PacGaussianCorrelate` and :class:`_PacGaussianCorrelateCols`."""
    flat = _flat_guide(rplan, gplan)
    if flat is not None:
        kr = _flat_kernel_rows(rplan.inputs(f, True), *flat, rplan.rows, x.dtype)
    else:
        fp, refs = gplan.padded(f)
        kr = _gaussian_kernel_rows(fp, refs, rplan, gplan, x.dtype)
    run = _cols_forward if channels_first else _rows_forward
    xr = rplan.inputs(x, channels_first)
    y = rplan.outputs(run(xr, _kernel_view(kr, rplan, channels_first), weight, rplan, shared), channels_first)
    if bias is not None:
        y.add_(bias.view(1, -1, 1, 1))
    ctx.save_for_backward(x, f, weight)
    ctx.plans = (rplan, gplan)
    ctx.geometry = (shared, bias is not None, channels_first)
    return y


def _gaussian_backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
    """The backward of :class:`_PacGaussianCorrelate` and :class:`_PacGaussianCorrelateCols`."""
    x, f, weight = ctx.saved_tensors
    rplan, gplan = ctx.plans
    shared, has_bias, cf = ctx.geometry
    need_x, need_f, need_w, need_b = ctx.needs_input_grad[:4]
    grad_x = grad_f = grad_w = gb = None
    if need_x or need_f or need_w:
        flat = _flat_guide(rplan, gplan)
        if flat is not None:
            ff = rplan.inputs(f, True)
            kr = _flat_kernel_rows(ff, *flat, rplan.rows, x.dtype)
        else:
            fp, refs = gplan.padded(f)
            kr = _gaussian_kernel_rows(fp, refs, rplan, gplan, x.dtype)
        taps = len(rplan.taps)
        run = _cols_backward if cf else _rows_backward
        grad_xr, grad_kr, grad_wt = run(
            rplan.inputs(x, cf),
            _kernel_view(kr, rplan, cf),
            weight,
            rplan.output_grads(grad_out, cf),
            rplan,
            shared,
            (need_x, need_f, need_w),
        )
        grad_x = rplan.input_grad(grad_xr, cf) if need_x else None
        grad_w = _rows_weight_grad(grad_wt, weight, rplan, shared) if need_w else None
        if need_f and flat is not None:
            grad_f = _flat_guidance_grad(ff, kr, grad_kr, *flat, rplan)
        elif need_f:  # dK/d(f_j - f_i) = -K (f_j - f_i); the reference f_i gets minus what f_j gets
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
        return _gaussian_forward(ctx, x, f, weight, bias, rplan, gplan, shared, False)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return _gaussian_backward(ctx, grad_out)


class _PacGaussianCorrelateCols(torch.autograd.Function):
    """:class:`_PacGaussianCorrelate` in the cols layout (channels first, :func:`_cols_forward`): the default of
    narrow layers on large images."""

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
        return _gaussian_forward(ctx, x, f, weight, bias, rplan, gplan, shared, True)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return _gaussian_backward(ctx, grad_out)


class _PacGaussianCorrelateTaps(torch.autograd.Function):
    """The fused Gaussian PAC of :class:`_PacGaussianCorrelate` with channels first and taps stacked per phase: the
    CPU form for transposed layers too narrow for the rows form (:func:`_rows_worth_it`).

    The fast path of ``PacConvTranspose2d`` for the common configuration (Gaussian kernel, no smoothing, no
    normalisation, no mask). Only the caller's ``x``, ``f`` and ``weight`` are saved for backward (padding happens
    inside), so the layer keeps nothing beyond its inputs alive; backward recomputes the taps. Only the kernel
    entries that meet real input samples are computed (a quarter of them for a stride-2 transposed layer). Taps that
    write the same outputs are stacked into one ``(C_out, n*C_in) x (n*C_in, HW)`` matrix product (a transient
    buffer of at most ``group_bytes``, the dispatcher's choice).
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
        group_bytes: int,
    ) -> Tensor:
        xp = F.pad(x, x_pad) if any(x_pad) else x
        fp, refs = gplan.padded(f)
        b, c = x.shape[:2]
        n_out = c if shared else weight.shape[0]
        bases, bufs = plan.output_buffers(x, n_out)
        max_hw = max(mh * mw for mh, mw in plan.phase_hw)
        for group in _tap_groups(plan, b * c * max_hw * x.element_size(), group_bytes):
            ph = plan.taps[group[0]][2]
            mh, mw = plan.phase_hw[ph]
            if shared:
                for i in group:
                    xs, kt, _ = _PacGaussianCorrelateTaps._taps(xp, fp, refs, plan, gplan, i)
                    u, v = plan.taps[i][:2]
                    bufs[ph].add_((xs * kt).flatten(2) * weight[0, 0, u, v])
                continue
            if torch.compiler.is_compiling():  # Dynamo refuses out= into a strided view
                parts = [_PacGaussianCorrelateTaps._taps(xp, fp, refs, plan, gplan, i) for i in group]
                stacked = torch.cat([(xs * kt).flatten(2) for xs, kt, _ in parts], dim=1)
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
        ctx.group_bytes = group_bytes
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
        g_ph = plan.split(g)
        grad_xp = torch.zeros_like(xp) if need_x else None
        grad_fp = torch.zeros_like(fp) if need_f else None
        grad_refs = [torch.zeros_like(r) for r in refs] if need_f else None
        grad_w = torch.zeros_like(weight) if need_w else None
        max_hw = max(mh * mw for mh, mw in plan.phase_hw)
        for group in _tap_groups(plan, b * c * max_hw * x.element_size(), ctx.group_bytes):
            ph = plan.taps[group[0]][2]
            mh, mw = plan.phase_hw[ph]
            g4 = g_ph[ph]
            g3 = g4.flatten(2)
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
                    stacked = torch.cat([(xs * kt).flatten(2) for xs, kt, _ in taps], dim=1)
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
        return grad_x, grad_f, grad_w, gb, None, None, None, None, None
