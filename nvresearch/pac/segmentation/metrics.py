"""Segmentation metrics of the PAC paper (Sec. 5.3): the dataset-level confusion matrix and the VOC scores."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["confusion_matrix", "segmentation_scores"]


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Confusion matrix of a segmentation, ``[true, predicted]``; labels outside ``[0, C)`` are skipped.

    Accumulate it over the whole dataset and then call :func:`segmentation_scores` (the VOC protocol of the
    official ``main.py``).

    Shape:
        - pred, target: :math:`(*)` integer class maps of equal shape.
        - output: int64 :math:`(C, C)`.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    pred, target = pred.flatten().long(), target.flatten().long()
    keep = (target >= 0) & (target < num_classes) & (target != ignore_index)
    index = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def segmentation_scores(confusion: Tensor) -> dict[str, Tensor]:
    """Mean IoU, pixel accuracy and mean class accuracy from a dataset-level confusion matrix (official ``main.py``).

    ``miou`` averages ``diag / (row + col - diag)`` over all classes, background included; a class absent from both
    prediction and ground truth has IoU NaN and makes the mean NaN, as in the reference.

    Shape:
        - confusion: :math:`(C, C)` ``[true, predicted]``.
        - output values: scalars, plus ``iou`` :math:`(C,)`.
    """
    conf = confusion.double()
    tp = conf.diag()
    iou = tp / (conf.sum(0) + conf.sum(1) - tp)
    return {
        "miou": iou.mean(),
        "acc": tp.sum() / conf.sum(),
        "macc": (tp / conf.sum(1)).mean(),
        "iou": iou,
    }
