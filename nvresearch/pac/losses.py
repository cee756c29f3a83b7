"""Losses of the PAC paper: joint upsampling (spec B.2) and segmentation (spec B.3)."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

__all__ = ["normalized_l2_loss", "segmentation_loss"]


def normalized_l2_loss(output: Tensor, target: Tensor, lr_min: Tensor, lr_scale: Tensor) -> Tensor:
    """Mean squared error in the normalised space of the low-resolution input (spec B.2, loss ``l2``).

    The network predicts the target min-max normalised with the statistics of its low-resolution input, so the loss
    compares ``output`` with ``(target - lr_min) / lr_scale``. This makes the loss independent of the depth range of
    each sample, as in the reference.

    Args:
        output: Network output in normalised units.
        target: High-resolution target in data units (e.g. metres).
        lr_min: Per-sample, per-channel minimum of the low-resolution input.
        lr_scale: Per-sample, per-channel range of the low-resolution input.

    Shape:
        - output, target: :math:`(B, C, H, W)`.
        - lr_min, lr_scale: :math:`(B, C, 1, 1)`.
        - output: scalar.
    """
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} must have the same shape")
    return F.mse_loss(output, (target - lr_min) / lr_scale)


def segmentation_loss(logits: Tensor, labels: Tensor, ignore_index: int = 255, focus: float | None = None) -> Tensor:
    """Per-pixel cross-entropy on class logits (``log Q`` of PAC-CRF), averaged over non-void pixels (spec B.3).

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
