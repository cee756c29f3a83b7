"""Colour conversions shared by the embedded worlds (torch-only)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["hsv_to_rgb"]


def hsv_to_rgb(h: Tensor, s: Tensor | float, v: Tensor | float) -> Tensor:
    """HSV to RGB, all in [0, 1], by the closed form ``c_n = v - v s clip(min(k_n, 4 - k_n), 0, 1)`` with
    ``k_n = (n + 6 h) mod 6`` for ``n = 5, 3, 1`` (R, G, B); hue wraps around.

    Computed in the dtype of ``h``: the FUNIT creatures use float32, the PAC segmentation palette float64.

    Shape:
        h: ``(...)``; s, v: broadcastable to ``h`` (or numbers); returns ``(..., 3)``.
    """
    s = torch.as_tensor(s, dtype=h.dtype, device=h.device)
    v = torch.as_tensor(v, dtype=h.dtype, device=h.device)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    return v[..., None] - v[..., None] * s[..., None] * torch.minimum(k, 4 - k).clamp(0, 1)
