"""Metrics of the Taylor-pruning experiments: top-k accuracy, and rank correlation with the oracle (paper Table 1)."""

from __future__ import annotations

import torch

from nvresearch.core.pruning.oracle import rank_correlation

__all__ = ["rank_correlation", "topk_correct"]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Per-sample 1.0 if the label is among the ``k`` highest logits, else 0.0 (top-1 / top-5 accuracy).

    Shape:
        - logits: ``(B, K)``; labels: ``(B,)``; returns ``(B,)`` float.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, K) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    k = min(int(k), logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1).float()
