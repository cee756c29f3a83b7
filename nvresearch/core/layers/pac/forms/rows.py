"""The rows form: the padded input as one channels-last matrix of pixel rows, each tap a row offset (the CPU default
of stride-1 ``PacConv2d`` and of ``PacConvTranspose2d`` where it pays)."""

from __future__ import annotations

import torch
from torch import Tensor

from nvresearch.core.layers.pac.plans import _RowsPlan


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
    buf = xr.new_empty(tiles[0][1] - tiles[0][0], c) if (plain and tiles) else None
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
    n = tiles[0][1] - tiles[0][0] if tiles else 0
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
