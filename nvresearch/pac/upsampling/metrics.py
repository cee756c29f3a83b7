"""Evaluation metrics of the PAC paper: joint depth and flow upsampling (Sec. 5.1).

All functions work in the units of the data: metres for NYU depth and
:class:`~nvresearch.pac.upsampling.data.SyntheticRGBD`, pixels for optical flow. The paper's NYU table (Table 1) is in
centimetres, i.e. the RMSE here multiplied by 100. The dataset-level number is the mean of the per-image values (not
the RMSE of all pooled pixels), with a 6-pixel border crop for NYU and none for Sintel.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "FLOW_UNKNOWN_THRESHOLD",
    "crop_border",
    "denormalize",
    "per_image_epe",
    "per_image_rmse",
]

FLOW_UNKNOWN_THRESHOLD = 1e7
"""Flow components larger than this in magnitude mark unknown flow (the Middlebury / Sintel convention)."""


def denormalize(output: Tensor, lr_min: Tensor, lr_scale: Tensor) -> Tensor:
    """Map a normalised prediction back to data units: ``output * lr_scale + lr_min``, as the reference.

    Shape:
        - output: :math:`(B, C, H, W)`; lr_min, lr_scale: :math:`(B, C, 1, 1)`; result like ``output``.
    """
    return output * lr_scale + lr_min


def crop_border(x: Tensor, border: int) -> Tensor:
    """Remove ``border`` pixels from each side of the last two dimensions (the official NYU protocol uses 6).

    Shape:
        - x: :math:`(*, H, W)`; result: :math:`(*, H - 2b, W - 2b)`.
    """
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return x
    h, w = x.shape[-2:]
    if 2 * border >= min(h, w):
        raise ValueError(f"border {border} leaves nothing of a {h}x{w} map")
    return x[..., border : h - border, border : w - border]


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(
            f"expected two (B, C, H, W) tensors of equal shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def per_image_rmse(pred: Tensor, target: Tensor, border: int = 0) -> Tensor:
    """Root-mean-square error of each image (official ``th_rmse``).

    Per sample and channel the squared error is averaged over pixels, summed over channels, and square-rooted.
    Average the result over the dataset to get the reported number (the mean of per-image RMSEs).

    Args:
        pred: Prediction in data units.
        target: Ground truth in data units.
        border: Pixels removed from each side before measuring (6 for NYU).

    Shape:
        - pred, target: :math:`(B, C, H, W)`.
        - output: :math:`(B,)`.
    """
    _check_pair(pred, target)
    diff = crop_border(pred, border).double() - crop_border(target, border).double()
    return diff.square().mean(dim=(-2, -1)).sum(dim=1).sqrt().to(pred.dtype)


def per_image_epe(pred_flow: Tensor, target_flow: Tensor, border: int = 0) -> Tensor:
    """Mean endpoint error of each flow field (official ``th_epe``).

    Pixels where the ground truth marks unknown flow (a component with magnitude above ``1e7``) are set to zero in
    both prediction and target, so they add zero error but still count in the pixel average, as in the reference.

    Args:
        pred_flow: Predicted flow ``(u, v)`` in pixels.
        target_flow: Ground-truth flow.
        border: Pixels removed from each side before measuring (0 for Sintel).

    Shape:
        - pred_flow, target_flow: :math:`(B, 2, H, W)`.
        - output: :math:`(B,)`.
    """
    _check_pair(pred_flow, target_flow)
    if pred_flow.shape[1] != 2:
        raise ValueError(f"flow must have 2 channels (u, v), got {pred_flow.shape[1]}")
    pred, target = crop_border(pred_flow, border).double(), crop_border(target_flow, border).double()
    unknown = (target.abs() > FLOW_UNKNOWN_THRESHOLD).any(dim=1, keepdim=True)
    pred = torch.where(unknown, torch.zeros_like(pred), pred)
    target = torch.where(unknown, torch.zeros_like(target), target)
    return (pred - target).square().sum(dim=1).sqrt().mean(dim=(-2, -1)).to(pred_flow.dtype)
