"""The joint-upsampling loss of the PAC paper (Sec. 5.1)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from nvresearch.pac.upsampling.metrics import crop_border

__all__ = ["normalized_l2_loss"]


def normalized_l2_loss(output: Tensor, target: Tensor, lr_min: Tensor, lr_scale: Tensor, border: int = 0) -> Tensor:
    """Mean squared error in the normalised space of the low-resolution input (the official loss ``l2``).

    The network predicts the target min-max normalised with the statistics of its low-resolution input, so the loss
    compares ``output`` with ``(target - lr_min) / lr_scale``. This makes the loss independent of the depth range of
    each sample, as in the reference. ``border`` pixels are removed from every side of both maps first: the
    reference trains on the target cropped by the evaluation border (6 px on NYU, official
    ``task_jointUpsampling/main.py`` ``train``), so the loss ignores the same border as the metric.

    Args:
        output: Network output in normalised units.
        target: High-resolution target in data units (e.g. metres).
        lr_min: Per-sample, per-channel minimum of the low-resolution input.
        lr_scale: Per-sample, per-channel range of the low-resolution input.
        border: Pixels cropped from each side before the loss (the evaluation border; 0 keeps every pixel).

    Shape:
        - output, target: :math:`(B, C, H, W)`.
        - lr_min, lr_scale: :math:`(B, C, 1, 1)`.
        - output: scalar.
    """
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} must have the same shape")
    return F.mse_loss(crop_border(output, border), crop_border((target - lr_min) / lr_scale, border))
