"""Metrics of the Taylor-pruning experiments: rank correlation with the oracle (paper Table 1).

Top-k accuracy is :func:`nvresearch.core.metrics.topk_correct` (FUNIT uses it as well).
"""

from __future__ import annotations

from nvresearch.core.pruning.oracle import rank_correlation

__all__ = ["rank_correlation"]
