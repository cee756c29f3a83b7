"""SCOPS evaluation on inputs with known answers (spec A.6, C.6). The landmark protocol was also checked against the
official ``face_evaluation`` on its bundled .mat files outside the repository (docs/papers/scops.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from nvresearch.scops.metrics import (
    ari,
    contingency,
    hungarian_match,
    kmeans,
    landmark_centers,
    landmark_regression_error,
    mean_error_iod,
    nmi,
    part_agreement,
)


def test_landmark_centers_in_pixels_without_eps() -> None:
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 5, 2] = 1  # part 1 at row 5, column 2
    labels[0, 1, 6] = labels[0, 3, 6] = 2  # part 2 at column 6, rows 1 and 3
    logits = F.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 40
    c = landmark_centers(logits)
    torch.testing.assert_close(c[0], torch.tensor([[2.0, 5.0], [6.0, 2.0]]))  # (x, y); eps = 1e-3 would move them
    assert landmark_centers(logits, size=16).shape == (1, 2, 2)


def test_regression_of_an_affine_function_is_exact() -> None:
    torch.manual_seed(0)
    gt = torch.rand(40, 5, 2) * 100
    a = torch.tensor([[0.8, 0.1], [-0.2, 1.1]])
    pred = torch.cat([gt @ a.T + torch.tensor([3.0, -7.0]), torch.rand(40, 3, 2)], dim=1)  # 8 predicted "parts"
    train, test = landmark_regression_error(pred[:30], gt[:30], pred[30:], gt[30:])
    assert train < 1e-6 and test < 1e-6  # float32 inputs


def test_regression_constant_prediction_by_hand() -> None:
    # constant predictions standardise to 0 (scale 1 for a constant column): the fit is the train mean of the GT
    base = torch.tensor([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [2.0, 8.0], [8.0, 8.0]])  # eyes 10 apart
    gt = torch.stack([base, base + torch.tensor([2.0, 0.0])])
    pred = torch.ones(2, 4, 2)
    train, test = landmark_regression_error(pred, gt, pred[:1], gt[:1])
    assert train == pytest.approx(0.1) and test == pytest.approx(0.1)  # |d| / 2 / IOD = 1 / 10
    same_eyes = gt.clone()
    same_eyes[1, 1] = same_eyes[1, 0]
    assert float(mean_error_iod(gt.flip(0), same_eyes)) == pytest.approx(0.1)  # IOD = 0 counts as 0, official
    with pytest.raises(ValueError, match="train 2 vs 1"):
        landmark_regression_error(pred, gt[:1], pred, gt)


def test_nmi_ari_match_sklearn_and_known_values() -> None:
    a, b = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 2])
    assert ari(a, b) == pytest.approx(4 / 7)  # sklearn's documented example, 0.5714...
    assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b))
    g = torch.Generator().manual_seed(0)
    p, t = torch.randint(0, 5, (500,), generator=g), torch.randint(0, 4, (500,), generator=g)
    t[:250] = p[:250] % 4  # partly dependent
    assert nmi(p, t) == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-12)
    assert ari(p, t) == pytest.approx(adjusted_rand_score(t, p), abs=1e-12)
    perm = torch.tensor([3, 0, 4, 1, 2])[p]  # relabelling changes nothing
    assert nmi(perm, p) == pytest.approx(1.0) and ari(perm, p) == pytest.approx(1.0)
    assert nmi(torch.zeros(4), torch.zeros(4)) == 1.0 and ari(torch.zeros(4), torch.zeros(4)) == 1.0
    assert contingency(a, b).tolist() == [[2, 0, 0], [0, 1, 1]]


def test_hungarian_match_by_hand() -> None:
    gt = torch.tensor([0, 0, 0, 1, 1, 1])
    pred = torch.tensor([2, 2, 0, 1, 1, 0])
    out = hungarian_match(pred, gt, num_pred=3, num_gt=2)
    assert out["mapping"] == {2: 0, 1: 1}  # label 0 (one pixel of each part) stays unmatched
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["miou"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        hungarian_match(pred, gt + 1, num_pred=3, num_gt=2)


def test_part_agreement_on_foreground_only() -> None:
    gt = torch.tensor([[0, 1, 1], [0, 2, 2]])
    pred = torch.tensor([[3, 0, 0], [1, 1, 1]])  # right on the parts, arbitrary on the background
    fg = gt > 0
    assert part_agreement(pred, gt, fg) == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    assert part_agreement(pred, gt)["ari"] < 1.0


def test_kmeans_separates_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.randn(50, 2, generator=g) * 0.1, torch.randn(50, 2, generator=g) * 0.1 + 5])
    labels = kmeans(pts, 2, generator=g)
    assert labels[:50].unique().numel() == 1 and labels[50:].unique().numel() == 1 and labels[0] != labels[-1]


def test_foreground_moments_of_known_shapes() -> None:
    from nvresearch.scops.metrics import foreground_moments

    fg = torch.zeros(3, 20, 20, dtype=torch.bool)
    fg[0, 2:7, 10:19] = True  # rows 2..6, columns 10..18: 9 wide, 5 high
    fg[1] = torch.eye(20, dtype=torch.bool)  # the main diagonal: x = y
    m = foreground_moments(fg)
    assert m.shape == (3, 3, 2)
    torch.testing.assert_close(m[0, 0], torch.tensor([14.0, 4.0], dtype=torch.float64))
    # a run of n integers has variance (n^2 - 1) / 12
    torch.testing.assert_close(m[0, 1], torch.tensor([80 / 12, 24 / 12], dtype=torch.float64))
    assert m[0, 2, 0].abs() < 1e-12
    assert m[1, 2, 0] > 0 and torch.isclose(m[1, 2, 0], m[1, 1, 0])  # along x = y: mu_xy = mu_xx = mu_yy
    assert torch.equal(m[2], torch.zeros(3, 2, dtype=torch.float64))  # empty mask


def test_position_kmeans_normalised_removes_translation_and_scale() -> None:
    from nvresearch.scops.metrics import position_kmeans_parts

    # two-part bars (left half part 1, right half part 2) at four places and two sizes: the normalised probe reads the
    # parts off the layout exactly; the absolute one clusters where the objects are, not which half
    gt = torch.zeros(4, 40, 40, dtype=torch.long)
    for i, (y, x, half) in enumerate([(2, 2, 4), (30, 24, 6), (4, 26, 5), (28, 3, 8)]):
        gt[i, y : y + 4, x : x + half] = 1
        gt[i, y : y + 4, x + half : x + 2 * half] = 2
    fg = gt > 0
    g = torch.Generator().manual_seed(0)
    normalised = position_kmeans_parts(fg, 2, normalised=True, generator=g)
    absolute = position_kmeans_parts(fg, 2, generator=g)
    assert torch.equal(normalised == 0, ~fg) and torch.equal(absolute == 0, ~fg)
    assert part_agreement(normalised, gt, fg)["nmi"] == pytest.approx(1.0)
    assert part_agreement(absolute, gt, fg)["nmi"] < 0.2


def test_feature_kmeans_finds_parts_that_the_features_encode() -> None:
    from nvresearch.scops.metrics import feature_kmeans_parts

    g = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 4, (3, 16, 16), generator=g)
    fg = gt > 0
    encoded = F.one_hot(gt, 4).permute(0, 3, 1, 2).float() * 3 + 0.1 * torch.randn(3, 4, 16, 16, generator=g)
    pred = feature_kmeans_parts(encoded, fg, 3, generator=g)
    assert torch.equal(pred == 0, ~fg)
    assert part_agreement(pred, gt, fg)["nmi"] == pytest.approx(1.0)
    coarse = feature_kmeans_parts(torch.randn(3, 4, 4, 4, generator=g), fg, 3, generator=g)  # up-sampled to 16x16
    assert coarse.shape == gt.shape and part_agreement(coarse, gt, fg)["nmi"] < 0.2
