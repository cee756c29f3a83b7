"""DG-Net losses against values computed by hand on tiny inputs, and the official weight schedule."""

from __future__ import annotations

import math

import pytest
import torch

from nvresearch.dgnet import (
    DGNetLossWeights,
    cross_entropy_pair,
    discriminator_loss,
    flip_horizontal,
    generator_adversarial_loss,
    generator_total,
    identity_loss,
    kl_to_teacher,
    ramp,
    reconstruction_loss,
    teacher_loss,
    teacher_soft_labels,
)


def test_reconstruction_is_mean_absolute_error_with_a_detached_target():
    out = torch.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    loss = reconstruction_loss(out, target)
    assert loss.item() == pytest.approx((1 + 2 + 0.5 + 2) / 4)
    loss.backward()
    assert target.grad is None
    assert torch.equal(out.grad, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) / 4)
    with pytest.raises(ValueError, match="equal shapes"):
        reconstruction_loss(out, target[:1])


def test_identity_losses_by_hand():
    """CE of uniform logits over K classes is ln K; of logits (ln 2, 0) against class 0 it is ln(3/2)."""
    uniform = torch.zeros(2, 4)
    labels = torch.tensor([0, 3])
    assert cross_entropy_pair(uniform, labels, uniform, labels).item() == pytest.approx(2 * math.log(4))
    sharp = torch.tensor([[math.log(2), 0.0, 0.0, 0.0]] * 2)
    zeros = torch.tensor([0, 0])
    # L^s_id = CE(p1_a) + CE(p1_b) + w (CE(p2_a) + CE(p2_b)); the fine head's CE is ln(5/2) here (2 / (2 + 3))
    got = identity_loss(uniform, sharp, zeros, uniform, sharp, zeros, fine_weight=0.4)
    assert got.item() == pytest.approx(2 * math.log(4) + 0.4 * 2 * math.log(5 / 2))
    assert identity_loss(uniform, sharp, zeros, uniform, sharp, zeros, 0.0).item() == pytest.approx(2 * math.log(4))


def test_generator_adversarial_is_twice_lsgan_summed_over_scales():
    outs = [torch.full((2, 1, 4, 2), 0.5), torch.full((2, 1, 2, 1), -1.0)]
    assert generator_adversarial_loss(outs).item() == pytest.approx(2 * 0.25 + 2 * 4.0)
    init_like = [torch.zeros(1, 1, 8, 4)] * 3  # a fresh D outputs ~0: 2 * 3 scales = 6 per direction (spec E.21)
    assert generator_adversarial_loss(init_like).item() == pytest.approx(6.0)


def test_discriminator_loss_and_penalty_by_hand():
    """Two 'scales' that are linear in the real image: 3 * x (every pixel a patch) and 2 * x[0, 0] (one patch).
    The penalty differentiates the sum over patches: per sample ||3||^2 * 4 pixels = 36 and ||2||^2 = 4."""
    real = torch.tensor([[[[0.0, 1.0], [2.0, 0.5]]], [[[1.0, 1.0], [0.0, -1.0]]]], requires_grad=True)
    real_outs = [3 * real, 2 * real[:, :, :1, :1]]
    fake_outs = [torch.full((2, 1, 2, 2), 0.5), torch.full((2, 1, 1, 1), 2.0)]
    loss, reg = discriminator_loss(fake_outs, real_outs, real, gp_weight=0.01)
    r0 = ((3 * real.detach() - 1) ** 2).mean().item()
    r1 = ((2 * real.detach()[:, :, 0, 0] - 1) ** 2).mean().item()
    assert reg.item() == pytest.approx(0.01 * (36 + 4))
    assert loss.item() == pytest.approx(0.25 + 4.0 + r0 + r1 + 0.01 * 40)
    loss.backward()  # the penalty's graph is kept: it trains D
    assert real.grad is not None
    with pytest.raises(ValueError, match="scales"):
        discriminator_loss(fake_outs[:1], real_outs, real)


def test_teacher_soft_label_styles_by_hand():
    p = torch.tensor([[0.5, 0.25, 0.25]]).log()
    pf = torch.tensor([[0.3, 0.2, 0.5]]).log()
    a, b = torch.tensor([1]), torch.tensor([2])
    assert torch.allclose(teacher_soft_labels(p, pf, 0), torch.tensor([[0.4, 0.225, 0.375]]))
    assert torch.equal(teacher_soft_labels(p, pf, 1), torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.equal(teacher_soft_labels(p, None, 2, appearance_labels=a), torch.tensor([[0.0, 1.0, 0.0]]))
    assert torch.allclose(teacher_soft_labels(p, None, 3), torch.full((1, 3), 1 / 3))
    assert torch.allclose(teacher_soft_labels(p, pf, 4, a, b), torch.tensor([[0.0, 0.375, 0.625]]))
    with pytest.raises(ValueError, match="flipped"):
        teacher_soft_labels(p, None, 0)
    with pytest.raises(ValueError, match="style"):
        teacher_soft_labels(p, pf, 5)
    assert torch.equal(flip_horizontal(torch.arange(3.0).view(1, 1, 1, 3)), torch.tensor([[[[2.0, 1.0, 0.0]]]]))


def test_kl_direction_normalisation_and_teacher_loss_by_hand():
    q = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    p = torch.tensor([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5]])
    # KL(q || p) / B: row 1 = 2 * 0.5 ln 2 (the q = 0 entry counts 0), row 2 = 0
    assert kl_to_teacher(p.log(), q).item() == pytest.approx(math.log(2) / 2)
    assert kl_to_teacher(q[1:].log(), q[1:]).item() == pytest.approx(0.0, abs=1e-7)
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    assert kl_to_teacher(p[:1].log(), one_hot).item() == pytest.approx(-math.log(0.25))
    # the fine head must name the structure provider: x_ba -> l_b, x_ab -> l_a
    leaning = torch.tensor([[0.0, math.log(2), 0.0]] * 2)  # CE = ln 2 for class 1, ln 4 otherwise
    leaning_0 = torch.tensor([[math.log(2), 0.0, 0.0]] * 2)  # CE = ln 2 for class 0
    l_a, l_b = torch.tensor([0, 0]), torch.tensor([1, 1])
    got = teacher_loss(p.log(), q, leaning, l_b, q[[1, 1]].log(), q[[1, 1]], leaning_0, l_a, 1.0, 0.2)
    assert got.item() == pytest.approx(math.log(2) / 2 + 0 + 0.2 * 2 * math.log(2))
    got = teacher_loss(p.log(), q, leaning, l_b, p.log(), q, leaning, l_a, kl_weight=3.0, fine_weight=0.0)
    assert got.item() == pytest.approx(3.0 * math.log(2))


def _official_ramp_loop(iterations: int, start: int, scale: float, maximum: float) -> list[tuple[float, float]]:
    """The official in-place update, iteration by iteration: (weight before, weight after) the step."""
    w, out = 0.0, []
    for it in range(iterations):
        before = w
        if it > start:
            w = min(w + scale, maximum)
        out.append((before, w))
    return out


def test_ramps_follow_the_official_in_place_schedule():
    """Reduced schedule (start 10, scale 0.25) against a step-by-step replay of the official update."""
    weights = DGNetLossWeights(warm_iter=10, warm_teacher_iter=12, warm_scale=0.25)
    recon, teacher = _official_ramp_loop(30, 10, 0.25, 1.0), _official_ramp_loop(30, 12, 0.25, 2.0)
    for it in range(30):
        w = weights.at(it)
        assert w["recon_f"] == pytest.approx(recon[it][1]) and w["recon_s"] == pytest.approx(recon[it][1])
        assert w["recon_f_on"] == float(recon[it][0] > 0)
        assert w["teacher"] == pytest.approx(teacher[it][1])
        assert w["teacher_on"] == float(teacher[it][0] > 0)
        assert w["fine_real"] == pytest.approx(0.2 * teacher[it][0])
    assert weights.at(29)["recon_x_cyc"] == 2.0 and weights.at(29)["teacher"] == 2.0


def test_reference_schedule_values():
    """Spec A.8: everything off until 30k; f/s reach 1 at 32k, cycle and teacher 2 at 34k; fine on real 0.4."""
    w = DGNetLossWeights()
    assert w.at(30_000)["teacher"] == 0 and w.at(30_000)["recon_f_on"] == 0
    first = w.at(30_001)
    assert first["recon_f"] == pytest.approx(5e-4) and first["recon_f_on"] == 0.0  # the first ramp step is a literal 0
    assert w.at(30_002)["recon_f_on"] == 1.0
    assert w.at(32_000)["recon_s"] == pytest.approx(1.0) and w.at(33_000)["recon_x_cyc"] == pytest.approx(1.5)
    late = w.at(90_000)
    assert (late["recon_f"], late["recon_x_cyc"], late["teacher"], late["fine_real"]) == pytest.approx((1, 2, 2, 0.4))
    assert (late["recon_x"], late["recon_xp"], late["id"], late["pid"], late["recon_id"], late["gan"]) == (
        5.0,
        5.0,
        1.0,
        1.0,
        0.5,
        1.0,
    )
    assert ramp(5, 10, 1.0, 0.3, 2.0) == 0.3 and ramp(11, 10, 1.0, 0.3, 2.0) == pytest.approx(1.3)


def test_generator_total_weights_each_term():
    names = ("gan", "recon_x", "recon_xp", "recon_f", "recon_s", "recon_x_cyc", "id", "pid", "recon_id", "teacher")
    terms = {n: torch.tensor(float(i + 1)) for i, n in enumerate(names)}
    weights = DGNetLossWeights().at(90_000)
    expected = 1 * 1 + 5 * 2 + 5 * 3 + 1 * 4 + 1 * 5 + 2 * 6 + 1 * 7 + 1 * 8 + 0.5 * 9 + 2 * 10
    assert generator_total(terms, weights).item() == pytest.approx(expected)
    terms["teacher"] = 0.0  # a term that is off is a literal 0, as in the official code
    assert generator_total(terms, weights).item() == pytest.approx(expected - 20)
    del terms["pid"]
    with pytest.raises(KeyError, match="pid"):
        generator_total(terms, weights)
