"""Metrics shared by several papers (torch-only): top-k classification hits.

Paper-specific evaluation protocols stay in ``nvresearch/<slug>/metrics.py``; a metric moves here once a second
paper uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

__all__ = ["topk_correct", "topk_hits"]


def topk_correct(logits: Tensor, labels: Tensor, k: int = 1) -> Tensor:
    """Per sample, 1.0 if the label is among the ``k`` highest logits, else 0.0 (``.mean()`` is top-k accuracy).

    ``k`` larger than the number of classes counts every sample as a hit.

    Shape:
        logits: ``(B, C)``; labels: ``(B,)`` class indices; returns ``(B,)`` float.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, C) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = logits.topk(min(int(k), logits.shape[1]), dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1).float()


def topk_hits(logits: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, Tensor]:
    """:func:`topk_correct` for several ``k`` at once, keyed by ``k``.

    Shape:
        logits: ``(B, C)``; labels: ``(B,)``; returns ``{k: (B,) float}``.
    """
    return {int(k): topk_correct(logits, labels, k) for k in ks}
