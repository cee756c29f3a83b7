"""The tap loop: strided slices per tap with channels first, recomputed in backward (strided ``PacConv2d``, narrow
layers with a given kernel)."""

from __future__ import annotations

import torch
from torch import Tensor

from nvresearch.core.layers.pac.plans import _tap_groups, _tap_slices, _TapPlan


class _PacCorrelate(torch.autograd.Function):
    """``out[b,o,y,x] = sum_{c,u,w} W[o,c,u,w] K[b,0,u,w,y,x] x[b,c,rows_u(y),cols_w(x)]`` for a :class:`_TapPlan`.

    Loops over taps with strided slices; the backward recomputes each tap's product instead of saving an im2col.
    Taps that write the same outputs can be stacked in groups, one ``(C_out, n*C_in) x (n*C_in, HW)`` matrix product
    per group of at most ``group_bytes`` (the dispatcher's choice). ``shared`` means a
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
                    (x[:, :, sh, sw] * kernel[:, :, u, v, ry, rx]).flatten(2)
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
        group_bytes: int,
    ) -> Tensor:
        b, c = x.shape[:2]
        n_out = c if shared else weight.shape[0]
        bases, bufs = plan.output_buffers(x, n_out)
        if shared:
            for u, v, ph, sh, sw in plan.taps:
                if bufs[ph].shape[-1] == 0:
                    continue
                ry, rx = plan.phases[ph]
                bufs[ph].add_((x[:, :, sh, sw] * kernel[:, :, u, v, ry, rx]).flatten(2) * weight[0, 0, u, v])
        else:
            max_hw = max(mh * mw for mh, mw in plan.phase_hw)
            for group in _tap_groups(plan, b * c * max_hw * x.element_size(), group_bytes):
                stacked = _PacCorrelate._stack(x, kernel, plan, group)
                w_group = torch.cat([weight[:, :, plan.taps[i][0], plan.taps[i][1]] for i in group], dim=1)
                bufs[plan.taps[group[0]][2]].baddbmm_(w_group.expand(b, -1, -1), stacked)
        out = plan.assemble(bases, bias)
        ctx.save_for_backward(x, kernel, weight)
        ctx.plan = plan
        ctx.group_bytes = group_bytes
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
        g_ph = plan.split(g)
        grad_x = torch.zeros_like(x) if need_x else None
        grad_k = torch.zeros_like(kernel) if need_k else None
        grad_w = torch.zeros_like(weight) if need_w else None
        max_hw = max(mh * mw for mh, mw in plan.phase_hw)
        for group in _tap_groups(plan, b * c * max_hw * x.element_size(), ctx.group_bytes):
            ph = plan.taps[group[0]][2]
            ry, rx = plan.phases[ph]
            mh, mw = plan.phase_hw[ph]
            g4 = g_ph[ph]
            g3 = g4.flatten(2)
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
        return grad_x, grad_k, grad_w, gb, None, None, None


def _pool_taps(
    x: Tensor, kernel: Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> Tensor:
    """PAC pooling of the padded ``x`` as a sum over taps of strided views: autograd keeps views of ``x`` and of the
    kernel, never an im2col copy."""
    out_hw = tuple(kernel.shape[-2:])
    out = x.new_zeros(*x.shape[:2], *out_hw)
    for u in range(kernel_size[0]):
        for v in range(kernel_size[1]):
            sh, sw = _tap_slices(u, v, dilation, stride, out_hw)
            out = out + x[:, :, sh, sw] * kernel[:, :, u, v]
    return out
