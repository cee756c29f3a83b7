"""The rows form: the padded input as one channels-last matrix of pixel rows, each tap a row offset (the CPU default
of stride-1 ``PacConv2d`` and of ``PacConvTranspose2d`` where it pays); and the cols form, the same geometry with
channels first (narrow layers on large images)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nvresearch.core.layers.pac.plans import _RowsPlan

_KernelRows = Tensor | Sequence[Tensor]  # (taps, rows, 1) / (taps, 1, rows), or one such (rows, 1) / (1, rows) per tap


def _per_tap(kernel_rows: _KernelRows) -> Sequence[Tensor]:
    """Each tap's kernel rows: a stacked tensor's views, or the per-tap tensors as given (the fused Gaussian form
    shares storage between mirrored taps)."""
    return kernel_rows.unbind(0) if isinstance(kernel_rows, Tensor) else kernel_rows


def _rows_weights(weight: Tensor, plan: _RowsPlan, shared: bool, for_input_grad: bool) -> Tensor:
    """Per-tap filters from a correlation-layout weight ``(O, C, kh, kw)``: ``(taps, C, O)`` for the forward product,
    ``(taps, O, C)`` for the input gradient, or ``(taps,)`` scalars for a shared depthwise filter."""
    u = torch.tensor([t[0] for t in plan.taps], device=weight.device)
    v = torch.tensor([t[1] for t in plan.taps], device=weight.device)
    if shared:
        return weight[0, 0, u, v]
    w_taps = weight[:, :, u, v].permute(2, 0, 1)  # (taps, O, C)
    return (w_taps if for_input_grad else w_taps.transpose(1, 2)).contiguous()


def _rows_forward(xr: Tensor, kr: _KernelRows, weight: Tensor, plan: _RowsPlan, shared: bool) -> list[Tensor]:
    """Per-phase output rows ``(rows, O)``: ``out[r] += (K_t[r] * x[r + offset_t]) @ W_t^T`` for each tap ``t``,
    tile by tile (all taps of a phase on one tile while it is in cache)."""
    c = xr.shape[1]
    w_taps = _rows_weights(weight, plan, shared, for_input_grad=False)
    o = c if shared else w_taps.shape[2]
    plain = not (torch.compiler.is_compiling() or torch.is_grad_enabled())  # out= is allowed
    tiles = plan.tiles(max(c, o), xr)
    buf = xr.new_empty(tiles[0][1] - tiles[0][0], c) if (plain and tiles) else None
    outs = [xr.new_zeros(plan.rows, o) for _ in plan.phases]
    kr = _per_tap(kr)
    for ph, taps in plan.by_phase():
        for r0, r1 in tiles:
            block = outs[ph][r0:r1]
            for t in taps:
                off = plan.taps[t][3]
                xt, kt = xr[r0 + off : r1 + off], kr[t][r0:r1]
                if shared:
                    block.addcmul_(xt, kt * w_taps[t])
                    continue
                prod = torch.mul(xt, kt, out=buf[: r1 - r0]) if plain else xt * kt
                block.addmm_(prod, w_taps[t])
    return outs


def _rows_backward(
    xr: Tensor,
    kr: _KernelRows,
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
    kr = _per_tap(kr)
    grad_kr = kr[0].new_zeros(len(plan.taps), plan.rows) if need_k else None
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
                xt, kt = xr[r0 + off : r1 + off], kr[t][r0:r1]
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


def _cols_weights(weight: Tensor, plan: _RowsPlan, shared: bool) -> Tensor:
    """Per-tap filters ``(taps, O, C)`` (the input gradient uses their transposes), or ``(taps,)`` when shared."""
    return _rows_weights(weight, plan, shared, for_input_grad=True)


def _buffer(buf: Tensor | None, m: int, like: Tensor, rows: int) -> Tensor:
    """A ``(rows, m)`` scratch block: ``buf`` when it has ``m`` columns (every tile but the last), else a new one."""
    return buf if (buf is not None and buf.shape[1] == m) else like.new_empty(rows, m)


def _cols_forward(xc: Tensor, kc: _KernelRows, weight: Tensor, plan: _RowsPlan, shared: bool) -> list[Tensor]:
    """Per-phase output columns ``(O, rows)``: ``out[:, r] += W_t @ (K_t[r] * x[:, r + offset_t])`` for each tap
    ``t``, tile by tile. ``xc`` is ``(C, rows + slack)``, ``kc`` is ``(taps, 1, rows)``.

    With few channels a channels-first product is the faster one: the tap product ``K_t * x_t`` broadcasts ``K_t``
    along long contiguous rows (channels last, it broadcasts over rows of only C values).
    """
    c = xc.shape[0]
    w_taps = _cols_weights(weight, plan, shared)
    o = c if shared else w_taps.shape[1]
    plain = not (torch.compiler.is_compiling() or torch.is_grad_enabled())  # out= is allowed
    tiles = plan.tiles(max(c, o), xc)
    buf = xc.new_empty(c, tiles[0][1] - tiles[0][0]) if (plain and tiles) else None
    outs = [xc.new_zeros(o, plan.rows) for _ in plan.phases]
    # per-tap views made once: the loop below runs taps x tiles times and its Python overhead counts at small C
    w_list, k_list, offs = w_taps.unbind(0), _per_tap(kc), [t[3] for t in plan.taps]
    for ph, taps in plan.by_phase():
        for r0, r1 in tiles:
            block = outs[ph][:, r0:r1]
            for t in taps:
                xt, kt = xc[:, r0 + offs[t] : r1 + offs[t]], k_list[t][:, r0:r1]
                if shared:
                    block.addcmul_(xt, kt * w_list[t])
                    continue
                prod = torch.mul(xt, kt, out=_buffer(buf, r1 - r0, xc, c)) if plain else xt * kt
                block.addmm_(w_list[t], prod)
    return outs


def _cols_backward(
    xc: Tensor,
    kc: _KernelRows,
    weight: Tensor,
    g_cols: list[Tensor],
    plan: _RowsPlan,
    shared: bool,
    needs: tuple[bool, bool, bool],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of :func:`_cols_forward`: input columns ``(C, rows + slack)``, kernel rows ``(taps, rows)`` and
    per-tap weights in the :func:`_rows_weights` *forward* layout ``(taps, C, O)`` (``(taps,)`` when shared)."""
    need_x, need_k, need_w = needs
    c = xc.shape[0]
    w_taps = _cols_weights(weight, plan, shared)
    o = c if shared else w_taps.shape[1]
    grad_xc = torch.zeros_like(xc) if need_x else None
    grad_kr = _per_tap(kc)[0].new_zeros(len(plan.taps), plan.rows) if need_k else None
    grad_w = None
    if need_w:  # accumulated as (taps, O, C), returned transposed
        grad_w = w_taps.new_zeros(w_taps.shape[0]) if shared else w_taps.new_zeros(w_taps.shape[0], o, c)
    # out= and reused buffers only when this backward is not itself differentiated
    plain = not (torch.compiler.is_compiling() or torch.is_grad_enabled())
    tiles = plan.tiles(max(c, o), xc)
    n = tiles[0][1] - tiles[0][0] if tiles else 0
    g_in, prod, g_k = (xc.new_empty(c, n), xc.new_empty(c, n), xc.new_empty(o, n)) if plain else (None,) * 3
    w_list, k_list, offs = w_taps.unbind(0), _per_tap(kc), [t[3] for t in plan.taps]  # see _cols_forward
    wt_list = w_list if shared else w_taps.transpose(1, 2).unbind(0)
    for ph, taps in plan.by_phase():
        for r0, r1 in tiles:
            m, gt = r1 - r0, g_cols[ph][:, r0:r1]
            for t in taps:
                off = offs[t]
                xt, kt = xc[:, r0 + off : r1 + off], k_list[t][:, r0:r1]
                if need_x or need_k:  # the gradient of the tap product K_t * x_t: W_t^T @ g
                    if shared:
                        gi = gt * w_list[t]
                    elif plain:
                        gi = torch.mm(wt_list[t], gt, out=_buffer(g_in, m, xc, c))
                    else:
                        gi = wt_list[t] @ gt
                    if need_x:
                        grad_xc[:, r0 + off : r1 + off].addcmul_(gi, kt)
                    if need_k:
                        if plain:
                            torch.sum(torch.mul(gi, xt, out=_buffer(prod, m, xc, c)), dim=0, out=grad_kr[t, r0:r1])
                        else:
                            grad_kr[t, r0:r1] = (gi * xt).sum(dim=0)
                if need_w:  # W_t gets (g * K_t) @ x_t^T
                    gk = torch.mul(gt, kt, out=_buffer(g_k, m, xc, o)) if plain else gt * kt
                    if shared:
                        grad_w[t] += (gk * xt).sum()
                    else:
                        grad_w[t].addmm_(gk, xt.t())
    if grad_w is not None and not shared:
        grad_w = grad_w.transpose(1, 2)
    return grad_xc, grad_kr, grad_w


def _rows_weight_grad(grad_taps: Tensor, weight: Tensor, plan: _RowsPlan, shared: bool) -> Tensor:
    """Scatters per-tap weight gradients (the :func:`_rows_weights` forward layout) into the weight's shape."""
    out = torch.zeros_like(weight)
    for t, (u, v, _, _) in enumerate(plan.taps):
        if shared:
            out[0, 0, u, v] = grad_taps[t]
        else:
            out[:, :, u, v] = grad_taps[t].t()
    return out


def _correlate_forward(
    ctx: torch.autograd.function.FunctionCtx,
    x: Tensor,
    kernel: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    plan: _RowsPlan,
    shared: bool,
    channels_first: bool,
) -> Tensor:
    """The forward of :class:`_PacRowsCorrelate` and :class:`_PacColsCorrelate`."""
    kr = plan.kernel_rows(kernel, channels_first)
    run = _cols_forward if channels_first else _rows_forward
    y = plan.outputs(run(plan.inputs(x, channels_first), kr, weight, plan, shared), channels_first)
    if bias is not None:
        y.add_(bias.view(1, -1, 1, 1))
    ctx.save_for_backward(x, kernel, weight)
    ctx.plan = plan
    ctx.geometry = (shared, bias is not None, channels_first)
    return y


def _correlate_backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
    """The backward of :class:`_PacRowsCorrelate` and :class:`_PacColsCorrelate`."""
    x, kernel, weight = ctx.saved_tensors
    plan: _RowsPlan = ctx.plan
    shared, has_bias, cf = ctx.geometry
    need_x, need_k, need_w, need_b = ctx.needs_input_grad[:4]
    grad_x = grad_k = grad_w = gb = None
    if need_x or need_k or need_w:
        xr, kr, g_rows = plan.inputs(x, cf), plan.kernel_rows(kernel, cf), plan.output_grads(grad_out, cf)
        run = _cols_backward if cf else _rows_backward
        grad_xr, grad_kr, grad_wt = run(xr, kr, weight, g_rows, plan, shared, (need_x, need_k, need_w))
        grad_x = plan.input_grad(grad_xr, cf) if need_x else None
        grad_k = plan.kernel_grad(grad_kr, kernel) if need_k else None
        grad_w = _rows_weight_grad(grad_wt, weight, plan, shared) if need_w else None
    if need_b and has_bias:
        gb = grad_out.sum(dim=(0, 2, 3))
    return grad_x, grad_k, grad_w, gb, None, None


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
        return _correlate_forward(ctx, x, kernel, weight, bias, plan, shared, False)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return _correlate_backward(ctx, grad_out)


class _PacColsCorrelate(torch.autograd.Function):
    """:class:`_PacRowsCorrelate` with channels first (the cols form): the padded input as one ``(C, rows)``
    matrix, each tap a column offset, one ``(O, C) @ (C, tile)`` product per tap and tile.

    The CPU form of narrow layers (fewer than :data:`~nvresearch.core.layers.pac.dispatch._ROWS_MIN_CHANNELS`
    channels) on large images: there the channels-last products and broadcasts of the rows form run on rows of only
    C values and were 2-3x slower per tap (8 channels), while the tap loop's strided 3-D slices cost more per pass.
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
        return _correlate_forward(ctx, x, kernel, weight, bias, plan, shared, True)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return _correlate_backward(ctx, grad_out)
