"""Slow motion for a user's frames: the intermediate frames between two consecutive frames at ``t = k / factor``.

Torch only (video decoding and encoding live in ``scripts/vinterp_slowmo.py``). The frames are zero-padded
bottom/right to the network's size multiple and cropped back, as the official evaluation pads its windows
(``VideoInterp.pad_images``); all ``factor - 1`` times of a pair run as one batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SLOWMO_FACTORS", "interpolate_pair"]

SLOWMO_FACTORS = (2, 4, 8)
"""Frame-rate multipliers of the slow-motion command (the paper evaluates up to 7 intermediate frames, x8)."""


@torch.no_grad()
def interpolate_pair(
    model: Callable[[Tensor, Tensor, Tensor], Tensor], frame0: Tensor, frame1: Tensor, factor: int, multiple: int = 32
) -> Tensor:
    """The ``factor - 1`` frames between ``frame0`` and ``frame1`` at ``t = 1/factor, ..., (factor - 1)/factor``.

    Args:
        model: ``(frame0, frame1, t (B,)) -> frame`` in 0-255 (a :class:`~nvresearch.vinterp.SuperSloMo`).
        frame0, frame1: two consecutive frames, RGB floats in 0-255.
        factor: the frame-rate multiplier (>= 2).
        multiple: pad H and W bottom/right with zeros to a multiple of this (the network's ``size_multiple``).

    Shape:
        frame0, frame1: ``(3, H, W)``; returns ``(factor - 1, 3, H, W)`` clamped to [0, 255].

    Raises:
        ValueError: factor < 2, or the two frames differ in shape (the message gives both).
    """
    if int(factor) != factor or factor < 2:
        raise ValueError(f"factor must be an integer >= 2, got {factor}")
    if frame0.shape != frame1.shape or frame0.dim() != 3 or frame0.shape[0] != 3:
        raise ValueError(f"frames must be two (3, H, W) tensors of one shape, got {tuple(frame0.shape)} and "
                         f"{tuple(frame1.shape)}")  # fmt: skip
    n = int(factor) - 1
    h, w = frame0.shape[-2:]
    pad = (0, -w % multiple, 0, -h % multiple)
    a = F.pad(frame0[None], pad).expand(n, -1, -1, -1)
    b = F.pad(frame1[None], pad).expand(n, -1, -1, -1)
    t = torch.arange(1, n + 1, dtype=torch.float32, device=frame0.device) / factor
    return model(a, b, t)[..., :h, :w].clamp(0, 255)
