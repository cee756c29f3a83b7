"""The reference form (``native_impl=True``, as the official native path): plain autograd on ``F.unfold``.

Obviously correct and memory-hungry (autograd keeps the im2col); every other form is tested against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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


def _reference_pool(
    x: Tensor, kernel: Tensor, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> Tensor:
    """The reference PAC pooling: the unfolded windows of the padded ``x`` times ``K``, summed over the taps."""
    b, c = x.shape[:2]
    cols = F.unfold(x, kernel_size, dilation=dilation, stride=stride).view(b, c, *kernel_size, *kernel.shape[-2:])
    return (cols * kernel).sum(dim=(2, 3))
