"""The unfold form: im2col and one matrix product per batch chunk, the im2col recomputed in backward (CUDA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _batch_chunks(per_sample_bytes: int, batch: int, chunk_bytes: int) -> list[slice]:
    """Batch slices whose im2col stays within ``chunk_bytes`` (at least one sample each; one empty slice for an
    empty batch)."""
    step = max(1, min(batch, chunk_bytes // max(per_sample_bytes, 1)))
    return [slice(i, min(i + step, batch)) for i in range(0, batch, step)] or [slice(0, 0)]  # empty: one chunk


class _PacUnfoldCorrelate(torch.autograd.Function):
    """The PAC correlation as im2col + one matrix product per batch chunk, recomputed in backward.

    The same answer as :class:`_PacCorrelate` with a handful of large kernels instead of several per tap (the CUDA
    form: a GPU is launch-bound on the tap loop at common sizes). Only ``x``, ``kernel`` and ``weight`` are saved;
    the im2col exists one batch chunk at a time (``chunk_bytes``, the dispatcher's choice). ``x`` is already padded
    (zero-inserted for transposed layers); ``weight`` is in correlation layout.
    """

    @staticmethod
    def _cols(x: Tensor, kernel: Tensor, stride: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
        b, c = x.shape[:2]
        kh, kw = kernel.shape[2:4]
        n = kernel.shape[-2] * kernel.shape[-1]
        return F.unfold(x, (kh, kw), dilation=dilation, stride=stride).view(b, c, kh * kw, n)

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
        chunk_bytes: int,
    ) -> Tensor:
        b, c = x.shape[:2]
        kh, kw, out_h, out_w = kernel.shape[2:]
        taps, n = kh * kw, out_h * out_w
        n_out = c if shared else weight.shape[0]
        w2 = weight.reshape(1, 1, taps, 1) if shared else weight.reshape(n_out, c * taps)
        outs = []
        for sl in _batch_chunks(c * taps * n * x.element_size(), b, chunk_bytes):
            cols = _PacUnfoldCorrelate._cols(x[sl], kernel, stride, dilation)
            cols.mul_(kernel[sl].reshape(-1, 1, taps, n))
            outs.append((cols * w2).sum(dim=2) if shared else torch.matmul(w2, cols.view(-1, c * taps, n)))
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        if bias is not None:
            out.add_(bias.view(1, -1, 1))
        ctx.save_for_backward(x, kernel, weight)
        ctx.geometry = (stride, dilation, shared, bias is not None)
        ctx.chunk_bytes = chunk_bytes
        return out.view(b, n_out, out_h, out_w)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, kernel, weight = ctx.saved_tensors
        stride, dilation, shared, has_bias = ctx.geometry
        need_x, need_k, need_w, need_b = ctx.needs_input_grad[:4]
        b, c = x.shape[:2]
        kh, kw, out_h, out_w = kernel.shape[2:]
        taps, n = kh * kw, out_h * out_w
        g = grad_out.reshape(b, grad_out.shape[1], n)
        n_out = g.shape[1]
        w2 = weight.reshape(1, 1, taps, 1) if shared else weight.reshape(n_out, c * taps)
        grad_x, grad_k, grad_w = [], [], []
        for sl in _batch_chunks(c * taps * n * x.element_size(), b, ctx.chunk_bytes):
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
        return gx, gk, gw, gb, None, None, None, None
