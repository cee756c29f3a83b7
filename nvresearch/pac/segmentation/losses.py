"""The segmentation loss of the PAC paper (Sec. 5.3): per-pixel cross-entropy, optionally focused."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

__all__ = ["segmentation_loss"]


def segmentation_loss(logits: Tensor, labels: Tensor, ignore_index: int = 255, focus: float | None = None) -> Tensor:
    """Per-pixel cross-entropy on class logits (``log Q`` of PAC-CRF), averaged over non-void pixels (official ``ce``).

    ``focus=t`` is the reference's ``fce_{t}``: per-pixel losses below ``-log t`` (pixels already predicted with
    probability above ``t``) are set to zero before averaging over all non-void pixels. ``None`` is ``ce``.

    Shape:
        - logits: :math:`(B, C, H, W)`; labels: :math:`(B, H, W)` int64 with ``ignore_index`` for void.
        - output: scalar (0 if every pixel is void).
    """
    if logits.dim() != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"expected logits (B, C, H, W) and labels (B, H, W), got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    per_pixel = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    valid = labels != ignore_index
    if focus is not None:
        if not 0.0 < focus < 1.0:
            raise ValueError(f"focus must be in (0, 1), got {focus}")
        per_pixel = per_pixel * (per_pixel >= -math.log(focus))
    return per_pixel.sum() / valid.sum().clamp_min(1)
