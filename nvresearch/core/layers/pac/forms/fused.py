"""The fused Gaussian forms: ``K = exp(-0.5 |f_j - f_i|^2)`` computed tap by tap from the guidance inside the
correlation and never stored; in the rows layout (:class:`_PacGaussianCorrelate`) or channels first
(:class:`_PacGaussianCorrelateTaps`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nvresearch.core.layers.pac.forms.rows import _rows_backward, _rows_forward, _rows_weight_grad
from nvresearch.core.layers.pac.plans import _GuidePlan, _RowsPlan, _tap_groups, _TapPlan


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
