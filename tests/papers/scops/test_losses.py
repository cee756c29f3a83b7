"""SCOPS losses against values computed by hand on tiny inputs (spec A.3, A.4, H.2); parity with the official code is
checked outside the repository and recorded in docs/papers/scops.md."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nvresearch.scops.losses import (
    LOSS_WEIGHTS,
    TPSWarp,
    concentration_loss,
    coordinate_grids,
    equivariance_loss,
    equivariance_losses,
    landmark_equivariance_loss,
    orthonormality_loss,
    part_centers,
    random_similarity_tps,
    semantic_consistency_loss,
    semantic_targets,
    similarity_tps,
    total_loss,
    tps_control_grid,
)

BIG = 40.0  # a logit margin that makes softmax one-hot to float precision


def _one_hot_logits(labels: torch.Tensor, channels: int) -> torch.Tensor:
    """``(B, H, W)`` labels -> logits whose softmax is one-hot."""
    return F.one_hot(labels, channels).permute(0, 3, 1, 2).float() * BIG


def test_coordinates_and_centres_of_a_delta() -> None:
    u, v = coordinate_grids(4, 8)
    assert u[0].tolist() == [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75] and v[:, 0].tolist() == [-1, -0.5, 0, 0.5]
    maps = torch.zeros(1, 1, 4, 8)
    maps[0, 0, 3, 2] = 1.0
    assert part_centers(maps, eps=0.0).tolist() == [[[-0.5, 0.5]]]  # (2j/W - 1, 2i/H - 1)
    # with eps the centre moves toward the grid mean: (1 * c + eps * sum(u)) / (1 + 32 eps)
    c = part_centers(maps, eps=1e-3)[0, 0]
    torch.testing.assert_close(c, torch.tensor([(-0.5 + 1e-3 * u.sum()) / 1.032, (0.5 + 1e-3 * v.sum()) / 1.032]))


def test_concentration_uniform_maps_closed_form() -> None:
    # equal logits: every part map is uniform; each part's variance is that of the discrete set {2j/W - 1} per axis,
    # (2/W)^2 (W^2 - 1) / 12, and the official loss divides the sum over b and k by B twice
    b, k, w = 2, 3, 4
    var = (2 / w) ** 2 * (w * w - 1) / 12
    got = concentration_loss(torch.zeros(b, k + 1, w, w))
    torch.testing.assert_close(got, torch.tensor(b * k * 2 * var / b**2))


def test_concentration_two_pixel_part_by_hand() -> None:
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = labels[0, 0, 2] = 1  # part 1 at u = -1 and u = 0 on row v = -1: centre -0.5, variance 0.25
    logits = _one_hot_logits(labels, 2)
    torch.testing.assert_close(concentration_loss(logits, eps=0.0), torch.tensor(0.25))
    batch = logits.expand(3, -1, -1, -1)
    torch.testing.assert_close(concentration_loss(batch, eps=0.0), torch.tensor(3 * 0.25 / 9))  # / B^2


def test_equivariance_kl_by_hand_and_zero_for_identity() -> None:
    z = torch.zeros(1, 2, 3, 3)
    z[:, 1] = math.log(3.0)  # p = (1/4, 3/4)
    target = torch.zeros(1, 2, 3, 3)  # zero logits: the uniform target of the padded border
    expected = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)) / 2  # mean over all B (K+1) H W elements
    torch.testing.assert_close(equivariance_loss(z, target), torch.tensor(expected))
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    assert equivariance_loss(logits, logits).abs() < 1e-7
    # a warp that moves everything out of frame warps the logits to zero: the target is uniform
    away = similarity_tps(torch.zeros(1), torch.ones(1), torch.tensor([[5.0, 5.0]]))
    kl, _ = equivariance_losses(torch.randn(1, 2, 3, 3), z, away)
    torch.testing.assert_close(kl, torch.tensor(expected))


def test_equivariance_gradients_kl_target_detached_landmark_not() -> None:
    torch.manual_seed(0)
    a = torch.randn(2, 3, 6, 6, requires_grad=True)
    b = torch.randn(2, 3, 6, 6, requires_grad=True)
    assert torch.autograd.grad(equivariance_loss(a, b), b, allow_unused=True)[0] is None
    grad = torch.autograd.grad(landmark_equivariance_loss(a, b), [a, b])
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0
    # by hand: the centres of one-hot parts, mean over B K 2 of the squared differences
    la, lb = torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long)
    la[0, 0, 0], lb[0, 2, 2] = 1, 1  # centres (-1, -1) and (0, 0)
    got = landmark_equivariance_loss(_one_hot_logits(la, 2), _one_hot_logits(lb, 2), eps=0.0)
    torch.testing.assert_close(got, torch.tensor(1.0))


def test_semantic_consistency_by_hand_parts_only() -> None:
    logits = torch.tensor([-BIG, BIG]).view(1, 2, 1, 1)  # all mass on part 1
    basis = torch.tensor([[1.0, 2.0]])
    v = torch.zeros(1, 2, 1, 1)
    torch.testing.assert_close(semantic_consistency_loss(logits, v, basis), torch.tensor(2.5))  # (1 + 4) / 2
    background = torch.tensor([BIG, -BIG]).view(1, 2, 1, 1)  # the background channel reconstructs nothing
    v = torch.tensor([3.0, 1.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(semantic_consistency_loss(background, v, basis), torch.tensor(5.0))


def test_semantic_targets_upsample_and_mask() -> None:
    feats = torch.arange(4.0).view(1, 1, 2, 2)
    sal = torch.zeros(1, 3, 3)
    sal[0, 0, 0] = 1.0
    sal[0, 2, 2] = 0.5
    out = semantic_targets(feats, 3, sal)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 0, 0] == 0.0 and out[0, 0, 2, 2] == 1.5 and out[0, 0, 1, 1] == 0  # corners kept, then masked


def test_orthonormality_known_values() -> None:
    assert orthonormality_loss(torch.eye(3, 5)) < 1e-5
    same = torch.ones(4, 6)
    torch.testing.assert_close(orthonormality_loss(same), torch.tensor(4.0 * 3.0), rtol=1e-5, atol=0)  # K (K - 1)
    torch.testing.assert_close(orthonormality_loss(torch.tensor([[3.0, 4.0], [4.0, 3.0]])), torch.tensor(2 * 0.96**2))


def test_total_loss_weights_and_ablation() -> None:
    assert LOSS_WEIGHTS == {"con": 10.0, "eqv": 1000.0, "lmeqv": 100.0, "sc": 1e4, "on": 0.1}
    terms = {k: torch.tensor(1.0) for k in LOSS_WEIGHTS}
    torch.testing.assert_close(total_loss(terms), torch.tensor(11110.1))
    torch.testing.assert_close(total_loss({"con": torch.tensor(2.0)}, {"con": 0.5}), torch.tensor(1.0))
    with pytest.raises(KeyError, match="conc"):
        total_loss({"conc": torch.tensor(1.0)})


# ------------------------------------------------------------------------------------------- thin-plate splines
def test_control_grid_order() -> None:
    g = tps_control_grid()
    assert g.shape == (25, 2)
    assert g[:6].tolist() == [[-1, -1], [-1, -0.5], [-1, 0], [-1, 0.5], [-1, 1], [-0.5, -1]]  # x varies slowest


def test_identity_tps_needs_align_corners_true() -> None:
    torch.manual_seed(0)
    img = torch.rand(2, 3, 32, 32)
    ident = similarity_tps(torch.zeros(2), torch.ones(2), torch.zeros(2, 2))
    assert (ident(img) - img).abs().max() < 5e-4
    # the same grid sampled with align_corners=False (torch >= 1.3's default) is half a pixel off
    off = F.grid_sample(img, ident.grid(32, 32), mode="bilinear", align_corners=False)
    assert (off - img).abs().max() > 0.3


def test_rotation_by_90_degrees_is_exact_and_spline_interpolates() -> None:
    torch.manual_seed(0)
    img = torch.rand(1, 2, 9, 9)
    rot = similarity_tps(torch.tensor([90.0]), torch.ones(1), torch.zeros(1, 2))
    torch.testing.assert_close(rot(img), torch.rot90(img, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    noise = (torch.rand(1, 25, 2) - 0.5) * 0.1
    warp = similarity_tps(torch.tensor([30.0]), torch.tensor([0.8]), torch.tensor([[0.1, -0.05]]), noise)
    torch.testing.assert_close(warp.warp_points(warp.target), warp.source, atol=1e-5, rtol=0)  # f(t_i) = s_i


def test_random_tps_seeded_and_degenerate_ranges() -> None:
    a = random_similarity_tps(3, generator=torch.Generator().manual_seed(1))
    b = random_similarity_tps(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.source, b.source) and a.batch_size == 3
    flat = random_similarity_tps(
        2, sigma=0.0, scale_range=(1.0, 1.0), rotation_deg=0.0, translation=0.0, generator=torch.Generator()
    )
    torch.testing.assert_close(flat.source, tps_control_grid().expand(2, -1, -1))
    # scale is drawn in 1 / scale_range: the corner (1, 1) of the target lands at distance sqrt(2) / s
    warp = random_similarity_tps(64, sigma=0.0, scale_range=(0.7, 2.0), translation=0.0, generator=torch.Generator())
    radius = warp.source[:, -1].norm(dim=1) / math.sqrt(2)
    assert radius.min() >= 0.5 - 1e-6 and radius.max() <= 1 / 0.7 + 1e-6 and radius.max() - radius.min() > 0.5
    with pytest.raises(ValueError, match="batch 2"):
        warp(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="differ"):
        TPSWarp(torch.zeros(4, 2), torch.zeros(1, 5, 2))


# ------------------------------------------------------------------------------------------- training objective
def test_imagenet_input_keeps_the_official_mean_order() -> None:
    from nvresearch.scops.losses import imagenet_from_caffe

    zero = torch.zeros(1, 3, 1, 1)  # the Caffe mean itself
    official = imagenet_from_caffe(zero).flatten()
    exact = imagenet_from_caffe(zero, official_mean_order=False).flatten()
    # official: the BGR-ordered mean added to the RGB tensor, so R gets 104.0 and B 122.7
    torch.testing.assert_close(official[0], torch.tensor((104.00698793 / 255 - 0.485) / 0.229))
    torch.testing.assert_close(exact[0], torch.tensor((122.67891434 / 255 - 0.485) / 0.229))


def test_color_jitter_identity_at_zero_strength_and_seeded() -> None:
    from nvresearch.scops.losses import color_jitter

    g = torch.Generator().manual_seed(0)
    pix = torch.randint(0, 256, (2, 3, 8, 8), generator=g).float()
    images = pix - torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)  # official order
    same = color_jitter(images, 0.0, 0.0, 0.0, 0.0, generator=g)
    torch.testing.assert_close(same, images)
    a = color_jitter(images, generator=torch.Generator().manual_seed(1))
    b = color_jitter(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and (a - images).abs().max() > 1


def test_objective_terms_weights_ablation_and_gradients() -> None:
    from nvresearch.scops.losses import SCOPSObjective
    from nvresearch.scops.models import PartBasis

    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 1)  # pointwise: exactly equivariant under any warp
    feats = torch.nn.Conv2d(3, 6, 1).requires_grad_(False)
    basis = PartBasis(3, 6)
    images = torch.randn(2, 3, 16, 16) * 30
    identity = {"sigma": 0.0, "scale_range": (1.0, 1.0), "rotation_deg": 0.0, "translation": 0.0}
    obj = SCOPSObjective(lambda x: feats(x) / 30, basis, jitter=False, tps=identity)
    out = obj(net, images, torch.ones(2, 16, 16), generator=torch.Generator().manual_seed(0))
    assert set(out) == {"sc", "on", "con", "eqv", "lmeqv", "loss"}
    assert out["eqv"] < 1e-6 and out["lmeqv"] < 1e-10  # identity warp of a pointwise net
    torch.testing.assert_close(out["loss"], total_loss({k: v for k, v in out.items() if k != "loss"}))
    out["loss"].backward()
    assert net.weight.grad.abs().sum() > 0 and basis.w.grad.abs().sum() > 0 and feats.weight.grad is None
    ablated = SCOPSObjective(feats, basis, terms=("con", "eqv", "lmeqv"), tps={"rotation_deg": 30.0})
    out = ablated(net, images, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"con", "eqv", "lmeqv", "loss"} and out["eqv"] > 0
    with pytest.raises(KeyError, match="semantic"):
        SCOPSObjective(feats, basis, terms=("semantic",))
