"""Loss of the Taylor-pruning experiments: the batch-mean cross-entropy (paper §3).

The criteria are defined on the gradient of the *batch-mean* loss, so the reduction matters: a summed loss scales
every Taylor score by ``N^2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["classification_loss"]


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Batch-mean cross-entropy ``E(D, W)`` of paper §3.

    Shape:
        - logits: ``(B, K)``; labels: ``(B,)`` int64; returns a scalar.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, K) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.cross_entropy(logits, labels)
