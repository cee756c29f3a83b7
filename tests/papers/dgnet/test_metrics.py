"""The Market-1501 protocol and DG-Net's test feature on tiny galleries with rankings worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nvresearch.dgnet.metrics import (
    average_precision,
    evaluate_query,
    extract_features,
    market_evaluate,
    multi_query_features,
    weight_query,
)

# Gallery for a query of identity 1 seen by camera 1, listed in decreasing score:
#   g0 id 2 cam 2 (wrong)  g1 id 1 cam 1 (junk: same camera)  g2 id 1 cam 2 (good)  g3 id -1 (junk)
#   g4 id 0 (distractor, stays)  g5 id 1 cam 3 (good)
# Without junk: g0 g2 g4 g5 -> good at ranks 1 and 3 (0-based): AP = 1/2 [(0 + 1/2)/2 + (1/3 + 2/4)/2] = 1/3
# (a step AP would give 1/2), CMC = 0 at rank 1, 1 from rank 2.
G_LABELS = torch.tensor([2, 1, 1, -1, 0, 1])
G_CAMS = torch.tensor([2, 1, 2, 3, 2, 3])
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def test_one_query_by_hand():
    ap, cmc = evaluate_query(SCORES, 1, 1, G_LABELS, G_CAMS)
    assert ap == pytest.approx(1 / 3)
    assert cmc.tolist() == [0, 1, 1, 1, 1, 1]
    # the order of the gallery does not matter, only the scores
    perm = torch.tensor([5, 3, 0, 4, 1, 2])
    ap2, cmc2 = evaluate_query(SCORES[perm], 1, 1, G_LABELS[perm], G_CAMS[perm])
    assert ap2 == pytest.approx(1 / 3) and torch.equal(cmc2, cmc)
    # a query from camera 2: g2 becomes junk, g1 (camera 1) good -> good at ranks 1 and 3 again... with g1 first
    ap3, cmc3 = evaluate_query(SCORES, 1, 2, G_LABELS, G_CAMS)  # ranking g0 g1 g4 g5: good at 1, 3
    assert ap3 == pytest.approx(1 / 3) and cmc3[0] == 0 and cmc3[1] == 1
    # no good entry at all: AP 0, CMC all 0
    ap4, cmc4 = evaluate_query(SCORES, 7, 1, G_LABELS, G_CAMS)
    assert ap4 == 0.0 and cmc4.sum() == 0


def test_trapezoidal_average_precision():
    assert average_precision(torch.tensor([True, False, True])) == pytest.approx(0.5 * (1 + (0.5 + 2 / 3) / 2))
    assert average_precision(torch.tensor([False, True])) == pytest.approx(0.25)  # (0 + 1/2) / 2
    assert average_precision(torch.tensor([True, True])) == pytest.approx(1.0)
    assert average_precision(torch.tensor([False, False])) == 0.0


def test_market_evaluate_means_over_all_queries_and_applies_alpha():
    """Three queries: the hand-worked one (AP 1/3), an easy one (AP 1), one without any good entry (counted as 0)."""
    # features on a circle so that dot products reproduce SCORES' order for query 0
    angles = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    gallery = torch.stack([angles.cos(), angles.sin()], 1)
    queries = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    res = market_evaluate(queries, [1, 2, 9], [1, 1, 1], gallery, G_LABELS, G_CAMS, alpha=None)
    assert res.ap.tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    assert res.mAP == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert res.rank1 == pytest.approx(1 / 3) and res.rank5 == pytest.approx(2 / 3)
    assert res.rank10 == pytest.approx(2 / 3)  # clipped to the gallery size
    # alpha: the fine (second) half of the query decides alone with alpha = -1, not at all with alpha = 0
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # gallery item 0 matches by primary half, item 1 by fine half
    q = torch.tensor([[0.6, 0.8]])
    first = lambda a: market_evaluate(q, [5], [1], g, [5, 6], [2, 2], alpha=a).rank1  # noqa: E731
    assert first(0.0) == 1.0 and first(-1) == 0.0 and first(0.5) == 1.0 and first(2.0) == 0.0
    with pytest.raises(ValueError, match="query features"):
        market_evaluate(queries, [1, 2], [1, 1, 1], gallery, G_LABELS, G_CAMS)


def test_weight_query():
    f = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert weight_query(f, 0.5).tolist() == [[1.0, 2.0, 1.5, 2.0]]
    assert weight_query(f, -1).tolist() == [[0.0, 0.0, 3.0, 4.0]]
    assert f.tolist() == [[1.0, 2.0, 3.0, 4.0]]  # not in place
    with pytest.raises(ValueError, match="halves"):
        weight_query(torch.zeros(1, 3))


class _RowEncoder(nn.Module):
    """features(x): primary = the first image row (so a flip reverses it), fine = a constant (1, 0)."""

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, 0, 0, :], torch.tensor([[1.0, 0.0]]).expand(x.shape[0], 2)


def test_extract_features_flip_sum_and_per_half_normalisation():
    x = torch.tensor([[[[3.0, 4.0]]], [[[0.0, 2.0]]]])
    enc = _RowEncoder().train()
    f = extract_features(enc, x, batch_size=1)
    # image 1: (3,4)/5 + (4,3)/5 = (1.4, 1.4) -> (1, 1)/sqrt 2; image 2: (0,1) + (1,0) -> (1, 1)/sqrt 2
    s = 1 / math.sqrt(2)
    assert torch.allclose(f, torch.tensor([[s, s, 1.0, 0.0], [s, s, 1.0, 0.0]]))
    assert enc.training  # mode restored


def test_multi_query_mean_of_same_identity_and_camera():
    feats = torch.tensor([[1.0, 0.0, 2.0, 2.0], [3.0, 0.0, 2.0, 2.0], [9.0, 9.0, 9.0, 9.0]])
    out = multi_query_features([4], [2], feats, [4, 4, 4], [2, 2, 3])
    assert out.tolist() == [[2.0, 0.0, 1.0, 1.0]]  # third image is another camera; fine half * 0.5
    with pytest.raises(ValueError, match="identity 5 in camera 2"):
        multi_query_features([5], [2], feats, [4, 4, 4], [2, 2, 3])
