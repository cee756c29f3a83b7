"""Known-answer tests for nvresearch.core.metrics (top-k hits, used by Taylor and FUNIT)."""

from __future__ import annotations

import pytest
import torch

from nvresearch.core.metrics import topk_correct, topk_hits


def test_topk_correct_by_hand() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.0, 0.1, 0.2]])
    labels = torch.tensor([1, 2, 0])
    assert topk_correct(logits, labels, 1).tolist() == [1.0, 0.0, 0.0]
    assert topk_correct(logits, labels, 2).tolist() == [1.0, 1.0, 0.0]
    assert topk_correct(logits, labels, 5).tolist() == [1.0, 1.0, 1.0]  # k above the class count: every sample
    assert topk_correct(logits, labels).dtype == torch.float32


def test_topk_hits_is_topk_correct_per_k() -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(50, 7, generator=g), torch.randint(0, 7, (50,), generator=g)
    hits = topk_hits(logits, labels, (1, 3, 7))
    assert sorted(hits) == [1, 3, 7]
    for k, h in hits.items():
        torch.testing.assert_close(h, topk_correct(logits, labels, k))
    # accuracy grows with k and reaches 1 at k = C
    assert hits[1].mean() <= hits[3].mean() <= hits[7].mean() == 1.0


def test_topk_errors() -> None:
    with pytest.raises(ValueError, match=r"expected logits \(B, C\) and labels \(B,\), got \(2, 3\) and \(3,\)"):
        topk_correct(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        topk_correct(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 0)
